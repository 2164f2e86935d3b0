"""The configuration file (issue 15 item 1): TOML read with tomllib, every key checked, an unknown
key or a wrong type named with its dotted key and its line, every command-line option over the
file, and `--check` printing the effective configuration without the PIN. The systemd unit and
`make install-service` (item 2): `systemd-analyze verify` on the installed unit."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from host.server import OVERRIDES, build_parser, check_config, server_config
from host.service.config import SCHEMA, ConfigError, key_line, load
from host.service.pin import EXIT_CONFIG, EXIT_PIN_REFUSED

EXAMPLE = ROOT / "packaging" / "setls.toml"


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host.server", *args, "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize(("text", "words"), [
    ('[cards]\nsim = 1\n\n[servers]\nhttps = 8443\nhtps = 8444\n',
     ["<config>:6:", "unknown key servers.htps", "https, coaps_tcp"]),
    ('[cards]\nsim = 1\n[limits]\n  backlog = "16"  # a string\n',
     ["<config>:4:", "limits.backlog", "expected an integer", '"16"']),
    ('[servers]\nhttps = 70000\n', ["<config>:2:", "servers.https", "must be from 0 to 65535 (HTTPS port), not 70000"]),
    ('servers.record_layer = "hsot"\n', ["<config>:1:", "servers.record_layer", '"card", "host"']),
    ('[cards]\nreaders = "Virtual PCD"\n', ["<config>:2:", "cards.readers", "list of strings"]),
    ('[cards]\nidentity = "server"\npin = "1234"\n', ["<config>:3:", "cards.pin", "LoadCredential=pin:FILE"]),
    ('[card]\nsim = 1\n', ["<config>:1:", "unknown table [card]", "[cards]"]),
    ('[logging]\nformat = "xml"\n', ["<config>:2:", "logging.format", '"text", "json"']),
    ('[metrics]\n"port" = true\n', ["<config>:2:", "metrics.port", "expected an integer"]),
    ('[limits]\nidle_timeout = -1\n', ["<config>:2:", "limits.idle_timeout",
      "must be above zero (seconds a", "), not -1"]),
    ('[servers\n', ["not valid TOML", "line 1"]),
])
def test_a_wrong_key_or_type_is_named_with_its_dotted_key_and_line(text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        load(text)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_key_lines_are_found_in_tables_dotted_and_quoted_keys() -> None:
    text = '# top\n[servers]\nhttps = 1\n"tls_echo" = 2\n\n[ limits ] # x\nbacklog=3\ncards.sim = 1\n'
    assert key_line(text, "servers.https") == 3
    assert key_line(text, "servers.tls_echo") == 4
    assert key_line(text, "limits.backlog") == 7
    assert key_line(text, "limits.cards.sim") == 8
    assert key_line(text, "limits") == 6
    assert key_line(text, "metrics.port") is None


def test_every_option_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "setls.toml"
    path.write_text('[cards]\nreaders = ["A"]\nidentity = "x"\n[servers]\nhttps = 1\nbind = ["127.0.0.1"]\n'
                    '[limits]\nbacklog = 3\nidle_timeout = 9\n[logging]\nformat = "json"\n[metrics]\nport = 9\n')
    args = build_parser().parse_args(["--config", str(path), "--reader", "B", "--identity", "y", "--https", "2",
                                      "--bind", "::1", "--backlog", "4", "--log-format", "text",
                                      "--metrics-port", "10", "-v"])
    config = server_config(args)
    assert config.cards.readers == ["B"] and config.cards.identity == "y"
    assert config.servers.https == 2 and config.servers.bind == ["::1"]
    assert (config.limits.backlog, config.limits.idle_timeout) == (4, 9.0)
    assert (config.logging.format, config.logging.level, config.metrics.port) == ("text", "debug", 10)
    plain = server_config(build_parser().parse_args(["--config", str(path)]))   # the file's, where none given
    assert (plain.cards.readers, plain.limits.backlog, plain.logging.format) == (["A"], 3, "json")
    # every option but the meta ones and the secrets (PIN, PSKs: never in the file) overrides a key of the schema
    options = {a.dest for a in build_parser()._actions
               if a.dest not in ("help", "config", "check", "pin", "verbose", "sim_psk")}
    assert options == set(OVERRIDES)
    assert all(dotted.split(".")[1] in SCHEMA[dotted.split(".")[0]] for dotted in OVERRIDES.values())


def test_check_prints_the_effective_configuration_without_the_pin(tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("86427531\n")
    pin.chmod(0o600)
    config = tmp_path / "setls.toml"
    config.write_text(EXAMPLE.read_text().replace('identity = "server"', f'identity = "server"\npin_file = "{pin}"'))
    result = check("--config", str(config), "--https", "8443")
    assert result.returncode == 0, result.stderr
    assert "86427531" not in result.stdout + result.stderr
    assert f"# PIN: file {pin} (value redacted)" in result.stdout
    assert "https = 8443" in result.stdout and 'readers = ["Virtual PCD 00 00"]' in result.stdout
    assert load(result.stdout).servers.https == 8443   # the output is itself a valid configuration
    pin.chmod(0o644)
    result = check("--config", str(config))
    assert result.returncode == EXIT_CONFIG and f"chmod 600 {pin}" in result.stderr, result.stderr


def test_check_answers_a_wrong_file_with_the_key_and_line_and_status_78(tmp_path: Path) -> None:
    config = tmp_path / "setls.toml"
    config.write_text(EXAMPLE.read_text().replace("backlog = 16", "backlog = 16\nbaklog = 3"))
    result = check("--config", str(config))
    line = config.read_text().splitlines().index("baklog = 3") + 1
    assert result.returncode == EXIT_CONFIG
    assert f"error: {config}:{line}: unknown key limits.baklog" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    missing = check("--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == EXIT_CONFIG and "cannot read the configuration" in missing.stderr


def test_no_configuration_file_keeps_the_command_line_as_it_was() -> None:
    result = check("--sim", "--https", "8443", "--coaps-tcp", "5684", "--tls-echo", "8444")   # make demo's
    assert result.returncode == 0, result.stderr
    assert "# PIN: the demo PIN (simulated cards)" in result.stdout
    nothing = check()
    assert nothing.returncode == 2 and "say which cards" in nothing.stderr   # a usage error, as before


def test_coaps_alone_is_a_server_on_udp_5684_unless_a_port_is_given(tmp_path: Path) -> None:
    default = check("--sim", "--coaps")
    assert default.returncode == 0, default.stderr
    assert "\ncoaps = 5684\n" in default.stdout
    chosen = check("--sim", "--coaps", "6684")
    assert "\ncoaps = 6684\n" in chosen.stdout
    path = tmp_path / "setls.toml"
    path.write_text("[cards]\nsim = 1\n[servers]\ncoaps = 0\n")   # port 0 counts as a server too
    assert server_config(build_parser().parse_args(["--config", str(path)])).servers.coaps == 0
    assert check("--config", str(path)).returncode == 0
    with pytest.raises(ConfigError, match="servers.coaps: must be from 0 to 65535 .*, not 70000"):
        load("[servers]\ncoaps = 70000\n")


# -- the unit and its installation ---------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    stage = tmp_path_factory.mktemp("stage")
    subprocess.run(["make", "-s", "install-service", "PREFIX=/usr/local", f"DESTDIR={stage}"], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    return stage


def unit_settings(installed: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (installed / "usr/local/lib/systemd/system/setls.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_is_notify_with_a_watchdog_hardened_and_never_restarts_into_the_pin(installed: Path) -> None:
    unit = unit_settings(installed)
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"] and unit["Restart"] == ["on-failure"]
    assert set(unit["RestartPreventExitStatus"][0].split()) == {str(EXIT_PIN_REFUSED), str(EXIT_CONFIG)}
    assert unit["LoadCredential"] == ["pin:/etc/setls/pin"]
    assert not any("--pin" in command or "SETLS_PIN" in command for command in unit["ExecStart"])
    assert unit["DynamicUser"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["ExecStart"] == [f"{ROOT}/.venv/bin/python -m host.server --config /etc/setls/setls.toml"]
    assert not re.search(r"@[A-Z_]+@", (installed / "usr/local/lib/systemd/system/setls.service").read_text())
    assert (installed / "etc/setls/setls.toml").read_text() == EXAMPLE.read_text()
    assert 'subject.user == "setls"' in (installed / "etc/polkit-1/rules.d/50-setls-pcscd.rules").read_text()


def test_systemd_analyze_verifies_the_installed_unit(installed: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd, ~10 MB)")
    unit = installed / "usr/local/lib/systemd/system/setls.service"
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "setls.service" in line]
    assert result.returncode == 0, result.stderr
    assert not ours, ours   # unknown keys are only warnings: none may name our unit
    broken = unit.with_name("broken.service")
    broken.write_text(unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    warned = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'WatchdogSecs'" in warned.stderr   # the check above can fail


def test_install_service_refuses_a_relative_prefix() -> None:
    result = subprocess.run(["make", "-s", "install-service", "PREFIX=usr", "DESTDIR=/nonexistent"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "PREFIX must be an absolute path" in result.stderr


def test_a_server_configured_by_its_file_alone_serves_curl(tmp_path: Path, applet_classes: Path) -> None:
    from conftest import start_server, stop_server

    from host.iso7816.simulator import free_port
    port = free_port()
    config = tmp_path / "setls.toml"
    config.write_text(f'[cards]\nsim = 1\n[servers]\nhttps = {port}\nbind = ["127.0.0.1"]\n'
                      '[limits]\nbacklog = 2\n[logging]\nformat = "json"\n')
    server = start_server(["--config", str(config)])
    try:
        curl = subprocess.run(["curl", "-sS", "--cacert", str(ROOT / "build/demo/ca.pem"), "--max-time", "60",
                               f"https://127.0.0.1:{port}/sensors/temperature"], capture_output=True, text=True,
                              timeout=90)
        assert curl.returncode == 0 and "celsius" in curl.stdout, curl.stderr
    finally:
        stop_server(server)
    messages = [json.loads(line)["message"] for line in server.lines().splitlines() if line.startswith("{")]
    assert f"https listening on 127.0.0.1:{port} (record layer in the card)" in messages
    assert not any("[::1]" in message for message in messages)   # servers.bind from the file


def test_sim_psks_come_from_the_command_line_only_and_need_simulated_cards() -> None:
    psk = "client1:" + "11" * 16
    config = server_config(build_parser().parse_args(["--sim", "--https", "0", "--sim-psk", psk]))
    assert config.cards.sim_psks == [(b"client1", bytes([0x11]) * 16)]
    assert "sim_psks" not in config.render()   # a secret: never printed, no key of the file
    real = server_config(build_parser().parse_args(["--reader", "A", "--https", "0", "--sim-psk", psk]))
    with pytest.raises(ConfigError, match="--sim-psk stores PSKs in simulated cards: give --sim as well"):
        check_config(real, None)


# -- a new user's attack: values that look like numbers, PIN files that are not ------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_timeouts_are_refused_from_the_file_with_key_and_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "setls.toml"
    path.write_text(f"[cards]\nsim = 1\n[servers]\ntls_echo = 0\n[limits]\nidle_timeout = {value}\n")
    result = check("--config", str(path))
    assert result.returncode == 78, result
    assert f"{path}:6: limits.idle_timeout: expected a finite number of seconds" in result.stderr, result.stderr


@pytest.mark.parametrize(("option", "value"), [("--idle-timeout", "nan"), ("--handshake-timeout", "inf")])
def test_nan_and_inf_timeouts_are_refused_on_the_command_line(option: str, value: str) -> None:
    result = check("--sim", "--tls-echo", "0", option, value)
    assert result.returncode == 2, result
    assert option in result.stderr and "not a finite number" in result.stderr, result.stderr


def test_a_range_error_says_the_value_once() -> None:
    for text in ('[limits]\nidle_timeout = -1.0\n', '[servers]\nhttps = 70000\n'):
        with pytest.raises(ConfigError) as error:
            load(text)
        value = text.split("= ")[1].strip()
        assert str(error.value).count(value) == 1, str(error.value)


def pin_config(tmp_path: Path, pin_file: Path) -> Path:
    path = tmp_path / "setls.toml"
    path.write_text(f'[cards]\nreaders = ["Virtual PCD 00 00"]\npin_file = "{pin_file}"\n[servers]\ntls_echo = 0\n')
    return path


@pytest.mark.parametrize(("content", "words"), [
    (b"1" * 2_000_000, ["larger than 64 bytes", "4 to 16"]),
    (b"12345678901234567\n", ["has 17 characters (bytes)", "the card takes 4 to 16"]),
    (b"123\n", ["has 3 characters (bytes)", "the card takes 4 to 16"]),
])
def test_a_pin_file_the_card_cannot_take_is_refused_at_check_in_one_sentence(
        tmp_path: Path, content: bytes, words: list[str]) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_bytes(content)
    pin_file.chmod(0o600)
    result = check("--config", str(pin_config(tmp_path, pin_file)))
    assert result.returncode == 78, result
    assert "cards.pin_file" in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_pin_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.symlink_to("/dev/zero")
    result = check("--config", str(pin_config(tmp_path, pin_file)))   # check()'s timeout: a hang fails
    assert result.returncode == 78, result
    assert "is not a regular file" in result.stderr, result.stderr


def test_a_group_readable_pin_file_is_said_to_be_open_to_its_group(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("123456\n")
    pin_file.chmod(0o640)
    result = check("--config", str(pin_config(tmp_path, pin_file)))
    assert result.returncode == 78, result
    assert "open to its group (mode 0640): chmod 600" in result.stderr, result.stderr


def test_a_pin_the_card_cannot_take_fails_at_start_in_one_sentence_before_the_card_sees_it() -> None:
    result = subprocess.run([sys.executable, "-m", "host.server", "--sim", "--tls-echo", "0", "--pin", "1" * 17],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result
    assert "the PIN from --pin has 17 characters (bytes); the card takes 4 to 16" in result.stderr, result.stderr
    assert "6700" not in result.stderr and "WRONG_LENGTH" not in result.stderr
