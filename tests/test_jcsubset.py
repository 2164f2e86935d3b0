"""Tests of scripts/jcsubset.py, the Java Card subset checker for class files.

The planted violations are small Java sources in fixtures/jcsubset/violations/, one file per rule;
fixtures/jcsubset/clean/ holds an applet the checker must accept, and fixtures/jcsubset/api/ uses
Java Card API members newer than the target cards. They are compiled here with the JDK's javac
(-source 8 -target 8 -g, as the converter reads them; clean/ and api/ against the jcardsim jar),
so the tests pin what javac really emits rather than hand-written bytecode.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "jcsubset.py"
FIXTURES = ROOT / "tests" / "fixtures" / "jcsubset"
JCARDSIM = ROOT / "build" / "lib" / "jcardsim.jar"
APPLET_CLASSES = ROOT / "build" / "applet" / "classes"
VIOLATIONS_PACKAGE = "fixtures/violations"
API_PACKAGE = "fixtures/api"
JC_3_1_MESSAGE = ("javacard.security.Signature.verifyPreComputedHash() is Java Card 3.1; "
                  "JCOP 3 is 3.0.4, JCOP 4 is 3.0.5")


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jcsubset", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["jcsubset"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


jcsubset = load_checker()


def javac(sources: list[Path], out: Path, classpath: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    command = ["javac", "-source", "8", "-target", "8", "-g", "-Xlint:-options", "-nowarn",
               "-d", str(out)]
    if classpath is not None:
        command += ["-cp", str(classpath)]
    result = subprocess.run(command + [str(s) for s in sources], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def violations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("javac") is None:
        pytest.skip("javac (a JDK) is needed to compile the fixtures")
    sources = sorted((FIXTURES / "violations").glob("*.java"))
    return javac(sources, tmp_path_factory.mktemp("violations"))


def compile_against_jcardsim(folder: str, factory: pytest.TempPathFactory) -> Path:
    if shutil.which("javac") is None:
        pytest.skip("javac (a JDK) is needed to compile the fixtures")
    if not JCARDSIM.is_file():
        pytest.skip(f"{JCARDSIM} missing: run scripts/fetch-jars.sh")
    sources = sorted((FIXTURES / folder).glob("*.java"))
    return javac(sources, factory.mktemp(folder), classpath=JCARDSIM)


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_against_jcardsim("clean", tmp_path_factory)


@pytest.fixture(scope="module")
def api_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_against_jcardsim("api", tmp_path_factory)


def check(path: Path, allow_int: bool = False, probed: Path | None = None) -> list[Any]:
    violations: list[Any] = jcsubset.check_paths([path], allow_int, probed)[0]
    return violations


def found(violations_dir: Path, name: str, allow_int: bool = False) -> set[tuple[str, int]]:
    """(rule, line) of each violation the checker reports in fixture `name`."""
    class_file = violations_dir / VIOLATIONS_PACKAGE / f"{name}.class"
    return {(v.rule, v.line) for v in check(class_file, allow_int)
            if v.file == f"{VIOLATIONS_PACKAGE}/{name}.java"}


def rules(violations_dir: Path, name: str, allow_int: bool = False) -> set[str]:
    return {rule for rule, _line in found(violations_dir, name, allow_int)}


def api_found(api_dir: Path, name: str, probed: Path | None = None) -> dict[int, list[str]]:
    """The [api-version] messages the checker reports in fixture api/`name`, by line."""
    by_line: dict[int, list[str]] = {}
    for v in check(api_dir / API_PACKAGE / f"{name}.class", probed=probed):
        assert v.file == f"{API_PACKAGE}/{name}.java" and v.rule == "api-version", v.render()
        by_line.setdefault(v.line, []).append(v.message)
    return by_line


def probed_list(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "jc-api-probed.txt"
    path.write_text("# probed uses\n" + "".join(line + "\n" for line in lines))
    return path


def line_of(name: str, snippet: str, folder: str = "violations") -> int:
    """The line of fixture `name` that holds snippet (lines count from 1, as javac's do)."""
    lines = (FIXTURES / folder / f"{name}.java").read_text().splitlines()
    matches = [number for number, text in enumerate(lines, 1) if snippet in text]
    assert len(matches) == 1, f"{snippet!r} is not on exactly one line of {name}.java"
    return matches[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


# --- types

def test_long_arithmetic_is_refused(violations_dir: Path) -> None:
    assert ("no-long", line_of("UsesLong", "total += amount")) in found(violations_dir, "UsesLong")


def test_float_and_double_are_refused(violations_dir: Path) -> None:
    reported = found(violations_dir, "UsesFloat")
    assert ("no-float", line_of("UsesFloat", "(float) a / b")) in reported
    assert ("no-float", line_of("UsesFloat", "double factor")) in reported


def test_char_arrays_are_refused(violations_dir: Path) -> None:
    assert ("no-char", line_of("UsesChar", "new char[4]")) in found(violations_dir, "UsesChar")


def test_int_fields_locals_and_arrays_are_refused(violations_dir: Path) -> None:
    reported = found(violations_dir, "UsesIntField")
    assert ("no-int", line_of("UsesIntField", "new int[4]")) in reported
    assert ("no-int", line_of("UsesIntField", "counter += by")) in reported


def test_int_constant_beyond_a_short_is_refused(violations_dir: Path) -> None:
    assert ("no-int", line_of("UsesIntField", "100000")) in found(violations_dir, "UsesIntField")


def test_allow_int_accepts_int_but_still_refuses_long(violations_dir: Path) -> None:
    assert rules(violations_dir, "UsesIntField", allow_int=True) == set()
    assert rules(violations_dir, "WideIntStore", allow_int=True) == set()
    assert "no-long" in rules(violations_dir, "UsesLong", allow_int=True)


# --- int arithmetic narrowed back to short

def test_unnarrowed_sum_in_a_comparison_is_refused(violations_dir: Path) -> None:
    line = line_of("WideIntStore", "off + len <= buf.length")
    assert ("int-not-narrowed", line) in found(violations_dir, "WideIntStore")


def test_unnarrowed_sum_as_array_index_is_refused(violations_dir: Path) -> None:
    line = line_of("WideIntStore", "buf[off + 1]")
    assert ("int-not-narrowed", line) in found(violations_dir, "WideIntStore")


def test_shifting_an_unnarrowed_sum_right_is_refused(violations_dir: Path) -> None:
    line = line_of("WideIntStore", "(a + b) >> 1")
    assert ("int-not-narrowed", line) in found(violations_dir, "WideIntStore")


def test_wide_value_merged_across_branches_is_refused(violations_dir: Path) -> None:
    line = line_of("WideIntStore", "far ? a + b : a")
    assert ("int-not-narrowed", line) in found(violations_dir, "WideIntStore")


def test_sum_stored_in_an_int_local_is_reported_once_as_an_int(violations_dir: Path) -> None:
    reported = found(violations_dir, "WideIntStore")
    sum_lines = {line_of("WideIntStore", "int wide = a + b"),
                 line_of("WideIntStore", "(short) wide")}
    assert {rule for rule, line in reported if line in sum_lines} == {"no-int"}


# --- classes outside the Java Card API

def test_string_constant_is_refused(violations_dir: Path) -> None:
    line = line_of("UsesString", '"hello"')
    assert ("class-not-in-api", line) in found(violations_dir, "UsesString")


def test_java_util_class_is_refused(violations_dir: Path) -> None:
    line = line_of("UsesVector", "items.addElement")
    assert ("class-not-in-api", line) in found(violations_dir, "UsesVector")


def test_java_lang_error_is_refused(violations_dir: Path) -> None:
    line = line_of("ThrowsError", "new Error()")
    assert ("class-not-in-api", line) in found(violations_dir, "ThrowsError")


# --- opcodes, modifiers, static initialisers

def test_synchronized_method_and_block_are_refused(violations_dir: Path) -> None:
    reported = found(violations_dir, "Synchronized")
    assert ("opcode", line_of("Synchronized", "synchronized (lock)")) in reported
    assert "modifier" in {rule for rule, _line in reported}


def test_native_strictfp_volatile_transient_are_refused(violations_dir: Path) -> None:
    messages = [v.message for v in check(violations_dir / VIOLATIONS_PACKAGE / "Modifiers.class")]
    for keyword in ("native", "strictfp", "volatile", "transient"):
        assert any(f"'{keyword}'" in message for message in messages), keyword


def test_multidimensional_array_is_refused(violations_dir: Path) -> None:
    line = line_of("MultiArray", "new byte[2][3]")
    assert ("opcode", line) in found(violations_dir, "MultiArray")


def test_lambda_is_refused(violations_dir: Path) -> None:
    assert ("opcode", line_of("Lambda", "x -> x")) in found(violations_dir, "Lambda")


def test_object_created_in_static_initialiser_is_refused(violations_dir: Path) -> None:
    reported = found(violations_dir, "StaticInit")
    assert ("clinit", line_of("StaticInit", "new Object()")) in reported
    assert line_of("StaticInit", "TABLE") not in {line for _rule, line in reported}


def test_class_version_above_java_8_is_refused(clean_dir: Path, tmp_path: Path) -> None:
    data = bytearray((clean_dir / "fixtures/clean/CleanApplet.class").read_bytes())
    data[6:8] = (55).to_bytes(2, "big")  # Java 11
    patched = tmp_path / "fixtures/clean/CleanApplet.class"
    patched.parent.mkdir(parents=True)
    patched.write_bytes(bytes(data))
    assert [v.rule for v in check(patched)] == ["class-version"]


# --- Java Card API versions (JCOP 3 is 3.0.4, JCOP 4 is 3.0.5)

def test_java_card_3_1_member_is_refused_naming_member_and_version(api_dir: Path) -> None:
    line = line_of("VerifiesPreComputedHash", "verifyPreComputedHash(", "api")
    assert api_found(api_dir, "VerifiesPreComputedHash") == {line: [JC_3_1_MESSAGE]}


def test_java_card_3_1_member_is_refused_even_when_listed_as_probed(
        api_dir: Path, tmp_path: Path) -> None:
    probed = probed_list(tmp_path, "fixtures.api.VerifiesPreComputedHash#check  fallback: none")
    line = line_of("VerifiesPreComputedHash", "verifyPreComputedHash(", "api")
    assert api_found(api_dir, "VerifiesPreComputedHash", probed) == {line: [JC_3_1_MESSAGE]}


def test_java_card_3_0_5_member_is_refused_unless_listed_as_probed(api_dir: Path) -> None:
    reported = api_found(api_dir, "SignsOneShot")
    probe = line_of("SignsOneShot", "PAD_NULL).close()", "api")
    use = line_of("SignsOneShot", "Signature.OneShot sig = ", "api")
    assert probe in reported and use in reported
    assert reported[probe] == [
        "javacard.security.Signature.OneShot is Java Card 3.0.5; JCOP 3 is 3.0.4: list "
        "fixtures.api.SignsOneShot#<init> in scripts/jc-api-probed.txt once it probes for it "
        "at install and falls back"]


def test_java_card_3_0_5_member_listed_as_probed_is_accepted(api_dir: Path, tmp_path: Path) -> None:
    probed = probed_list(
        tmp_path,
        "fixtures.api.SignsOneShot#<init>  fallback: oneShot stays false when open() throws",
        "fixtures.api.SignsOneShot#sign    fallback: the Signature allocated at install")
    assert api_found(api_dir, "SignsOneShot", probed) == {}


def test_listing_only_the_probe_still_refuses_the_use(api_dir: Path, tmp_path: Path) -> None:
    probed = probed_list(tmp_path, "fixtures.api.SignsOneShot#<init>  fallback: oneShot false")
    reported = api_found(api_dir, "SignsOneShot", probed)
    assert line_of("SignsOneShot", "Signature.OneShot sig = ", "api") in reported
    assert line_of("SignsOneShot", "PAD_NULL).close()", "api") not in reported


def test_cli_probed_option(api_dir: Path, tmp_path: Path) -> None:
    class_file = str(api_dir / API_PACKAGE / "SignsOneShot.class")
    assert run_cli(class_file).returncode == 1
    probed = probed_list(tmp_path, "fixtures.api.SignsOneShot#<init>  fallback: oneShot false",
                         "fixtures.api.SignsOneShot#sign  fallback: the install-time Signature")
    result = run_cli("--probed", str(probed), class_file)
    assert result.returncode == 0, result.stdout


def test_probed_entry_without_its_fallback_is_a_usage_error(tmp_path: Path) -> None:
    probed = probed_list(tmp_path, "fixtures.api.SignsOneShot#sign")
    result = run_cli("--probed", str(probed), str(tmp_path))
    assert result.returncode == 2
    assert f"{probed}:2" in result.stderr


def test_default_probed_list_is_readable() -> None:
    assert jcsubset.ProbedUses.load(None).label == "scripts/jc-api-probed.txt"


def test_version_table_holds_only_additions_after_jcop3() -> None:
    table = jcsubset.API
    versions = [*table.classes.values(), *table.packages.values(),
                *(m.version for ms in table.members.values() for m in ms)]
    assert versions and all(jcsubset.version_key(v) > (3, 0, 4) for v in versions)
    names = [*table.classes, *table.packages, *(owner for owner, _name in table.members)]
    assert all(name.startswith(("javacard/", "javacardx/")) for name in names)


def test_version_table_resolves_overloads_and_inherited_members() -> None:
    ref = jcsubset.MemberRef
    build = "javacard/security/KeyBuilder"
    key = "Ljavacard/security/Key;"
    assert jcsubset.API.member_version(ref(build, "buildKey", f"(BSZ){key}")) is None
    assert jcsubset.API.member_version(ref(build, "buildKey", f"(BBSZ){key}")) == (build, "3.0.5")
    verify = ref("javacard/security/Signature$OneShot", "verifyPreComputedHash", "([BSS[BSS)Z")
    assert jcsubset.API.member_version(verify) == ("javacard/security/Signature", "3.1")
    copy = ref("javacard/security/ECPrivateKey", "copyDomainParametersFrom",
               "(Ljavacard/security/ECKey;)V")
    assert jcsubset.API.member_version(copy) == ("javacard/security/ECKey", "3.0.5")
    assert jcsubset.API.class_version("javacardx/security/cert/X509Certificate") == "3.1"
    assert jcsubset.API.class_version("javacardx/security/SensitiveResult") == "3.0.5"


# --- what must pass

def test_clean_applet_passes(clean_dir: Path) -> None:
    assert [v.render() for v in check(clean_dir)] == []


def test_every_planted_violation_is_found(violations_dir: Path) -> None:
    expected = {"UsesLong": "no-long", "UsesFloat": "no-float", "UsesChar": "no-char",
                "UsesIntField": "no-int", "WideIntStore": "int-not-narrowed",
                "UsesString": "class-not-in-api", "UsesVector": "class-not-in-api",
                "ThrowsError": "class-not-in-api", "Synchronized": "opcode",
                "Modifiers": "modifier", "MultiArray": "opcode", "Lambda": "opcode",
                "StaticInit": "clinit"}
    sources = {p.stem for p in (FIXTURES / "violations").glob("*.java")}
    assert sources == set(expected), "every fixture needs an expected rule here"
    for name, rule in expected.items():
        assert rule in rules(violations_dir, name), name


@pytest.mark.skipif(not any(APPLET_CLASSES.rglob("*.class")),
                    reason="build/applet/classes is empty: run `ant -q compile` first")
def test_real_applet_passes() -> None:
    result = run_cli(str(APPLET_CLASSES))
    assert result.returncode == 0, result.stdout + result.stderr


# --- the command line

def test_cli_prints_source_line_and_rule_and_exits_1(violations_dir: Path) -> None:
    result = run_cli(str(violations_dir / VIOLATIONS_PACKAGE / "UsesLong.class"))
    line = line_of("UsesLong", "total += amount")
    assert result.returncode == 1
    assert f"{VIOLATIONS_PACKAGE}/UsesLong.java:{line} add(): [no-long]" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("jcsubset: ")


def test_cli_exits_0_when_clean(clean_dir: Path) -> None:
    result = run_cli(str(clean_dir))
    assert result.returncode == 0, result.stdout
    assert "no violations" in result.stdout


def test_cli_allow_int_flag(violations_dir: Path) -> None:
    result = run_cli("--allow-int", str(violations_dir / VIOLATIONS_PACKAGE / "UsesIntField.class"))
    assert result.returncode == 0, result.stdout


def test_cli_exits_2_on_missing_path(tmp_path: Path) -> None:
    assert run_cli(str(tmp_path / "nowhere")).returncode == 2


def test_cli_exits_2_on_a_file_that_is_not_a_class(tmp_path: Path) -> None:
    bogus = tmp_path / "Bogus.class"
    bogus.write_bytes(b"not a class file")
    result = run_cli(str(bogus))
    assert result.returncode == 2
    assert "Bogus.class" in result.stderr


def test_cli_exits_2_on_truncated_class(clean_dir: Path, tmp_path: Path) -> None:
    data = (clean_dir / "fixtures/clean/CleanApplet.class").read_bytes()
    truncated = tmp_path / "Truncated.class"
    truncated.write_bytes(data[: len(data) // 2])
    assert run_cli(str(truncated)).returncode == 2


def test_cli_exits_2_without_arguments() -> None:
    assert run_cli().returncode == 2
