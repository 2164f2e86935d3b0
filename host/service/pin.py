"""The PIN of a service: where it comes from, and a VERIFY that can never block the card.

Sources, first found wins: `--pin` (the process list shows it: for a terminal only), the systemd
credential `$CREDENTIALS_DIRECTORY/pin` (`LoadCredential=pin:/etc/setls/pin`), the file
`cards.pin_file` (mode 0600 or stricter, else refused), `$SETLS_PIN`, the demo PIN for simulated
cards, a prompt on a terminal.

`unlock()` reads the identity's tries from the card (GET DATA STATUS, no try used) before a VERIFY
(docs/apdu.md) and sends none when:
  - the PIN is blocked (0 tries) or one try is left: the last try is a person's to use;
  - this card refused this very PIN before and no right PIN was given since (its tries did not go
    back up): `RefusedPins` remembers it in the state directory, so a restart loop
    (Restart=on-failure, a person retrying `systemctl start`) uses one try in all, not three;
  - the identity's public key is not the one this process unlocked before (a card put back
    must be the same identity: `same_identity()`, for the card supervisor that reopens cards).
Each refusal is a `PinRefusal` whose message is one sentence naming the fix; the server exits with
`EXIT_PIN_REFUSED`, which the unit lists in RestartPreventExitStatus=.
"""
from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from host.card.commands import CardOpenError, SeTlsCard
from host.card.errors import PinBlockedError, WrongPinError
from host.provision import PIN_LENGTHS

log = logging.getLogger(__name__)

EXIT_PIN_REFUSED = 77     # sysexits EX_NOPERM: wrong, blocked or nearly blocked PIN; a restart cannot help
EXIT_CONFIG = 78          # sysexits EX_CONFIG: the configuration is wrong
PIN_ENV = "SETLS_PIN"
CREDENTIAL = "pin"        # LoadCredential=pin:FILE
PIN_FILE_MAX = 64         # bytes read from a PIN file at most (a PIN has 16 at most, plus a newline)
STATE_FILE = "refused-pins.json"


class PinRefusal(CardOpenError):
    """The identity was not unlocked, and retrying with the same PIN must not happen; the message
    is one sentence with the fix. `tries_left` as the card reported it."""

    def __init__(self, message: str, tries_left: int) -> None:
        super().__init__(message)
        self.tries_left = tries_left


class IdentityChanged(CardOpenError):
    """A card put back whose identity key is not the one unlocked before: its PIN is not sent."""


@dataclass(frozen=True)
class Pin:
    value: str
    source: str      # for the log and --check: where it came from (never the value)


def read_pin_file(path: Path, what: str) -> str:
    """The PIN in `path` (one line; trailing newline dropped, at most PIN_FILE_MAX bytes read).

    Raises CardOpenError, in one sentence naming the fix, if the file cannot be read, is not a
    regular file (a device, a FIFO: never read), is readable by its group or others, is larger
    than PIN_FILE_MAX bytes, or holds a PIN that is not 4-16 bytes (`check_pin_length`)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise CardOpenError(f"the PIN {what} {path} is not a regular file: give a file holding the PIN "
                                f"on one line (mode 0600)")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):   # replaced between the two looks
                raise CardOpenError(f"the PIN {what} {path} is not a regular file")
            data = os.read(fd, PIN_FILE_MAX + 1)
        finally:
            os.close(fd)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardOpenError(f"cannot read the PIN {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        whom = "others" if mode & stat.S_IRWXO else "its group"
        raise CardOpenError(f"the PIN {what} {path} is open to {whom} (mode {mode:04o}): chmod 600 {path}")
    if len(data) > PIN_FILE_MAX:
        low, high = PIN_LENGTHS
        raise CardOpenError(f"the PIN {what} {path} is larger than {PIN_FILE_MAX} bytes: it should hold "
                            f"only the PIN ({low} to {high} characters) on one line")
    pin = text.rstrip("\r\n")
    if not pin:
        raise CardOpenError(f"the PIN {what} {path} is empty")
    check_pin_length(pin, f"the {what} {path}")
    return pin


def check_pin_length(pin: str, source: str) -> None:
    """CardOpenError unless `pin` has PIN_LENGTHS (4 to 16) bytes in UTF-8, as the card's
    Identity.PIN_MIN/PIN_MAX take them (a longer one would be refused by the card at start)."""
    low, high = PIN_LENGTHS
    size = len(pin.encode("utf-8"))
    if not low <= size <= high:
        raise CardOpenError(f"the PIN from {source} has {size} characters (bytes); the card takes "
                            f"{low} to {high}")


def find_pin(cli_pin: str | None, pin_file: str | None, simulated: bool, demo_pin: str, identity: str,
             environ: dict[str, str] | None = None, prompt: bool = True) -> Pin:
    """The PIN and where it came from (the order in the module's docstring); CardOpenError if none
    or if it is not 4-16 bytes long (`check_pin_length`: said before the card sees it)."""
    found = _find_pin(cli_pin, pin_file, simulated, demo_pin, identity, environ, prompt)
    check_pin_length(found.value, found.source)
    return found


def _find_pin(cli_pin: str | None, pin_file: str | None, simulated: bool, demo_pin: str, identity: str,
              environ: dict[str, str] | None, prompt: bool) -> Pin:
    env = dict(os.environ) if environ is None else environ
    if cli_pin:
        return Pin(cli_pin, "--pin")
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).exists():
        path = Path(credentials) / CREDENTIAL
        return Pin(read_pin_file(path, "credential"), f"systemd credential {CREDENTIAL!r}")
    if pin_file:
        return Pin(read_pin_file(Path(pin_file), "file"), f"file {pin_file}")
    if env.get(PIN_ENV):
        return Pin(env[PIN_ENV], f"${PIN_ENV}")
    if simulated:
        return Pin(demo_pin, "the demo PIN (simulated cards)")
    if prompt and sys.stdin.isatty():
        return Pin(getpass.getpass(f"PIN of identity {identity!r}: "), "the prompt")
    raise CardOpenError(f"no PIN: give LoadCredential=pin:FILE (systemd), cards.pin_file, ${PIN_ENV}, "
                        f"or run in a terminal")


def describe_pin_source(cli_pin: str | None, pin_file: str | None, simulated: bool,
                        environ: dict[str, str] | None = None) -> str:
    """Where the PIN will come from, without reading it (for --check)."""
    env = dict(os.environ) if environ is None else environ
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if cli_pin:
        return "--pin"
    if credentials and (Path(credentials) / CREDENTIAL).exists():
        return f"systemd credential {CREDENTIAL!r}"
    if pin_file:
        return f"file {pin_file}"
    if env.get(PIN_ENV):
        return f"${PIN_ENV}"
    return "the demo PIN (simulated cards)" if simulated else "a prompt (terminal only)"


def state_directory(configured: str | None, environ: dict[str, str] | None = None) -> Path | None:
    """Where refused PINs are remembered: the configuration's, else systemd's $STATE_DIRECTORY
    (StateDirectory=setls), else $XDG_STATE_HOME/setls or ~/.local/state/setls."""
    env = dict(os.environ) if environ is None else environ
    if configured:
        return Path(configured)
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or (str(Path(env["HOME"]) / ".local" / "state") if env.get("HOME") else "")
    return Path(base) / "setls" if base else None


class RefusedPins:
    """Per card (the SHA-256 of its identity's public key): a keyed digest of the PIN it refused and
    the tries left after it, in `directory/refused-pins.json` (0600). Only refused PINs are kept,
    and forgotten once a PIN is verified. Without a usable directory it remembers in memory only,
    and says so once."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / STATE_FILE if directory is not None else None
        self._memory: dict[str, dict[str, object]] = {}

    @staticmethod
    def _card(key: bytes) -> str:
        return hashlib.sha256(key).hexdigest()

    @staticmethod
    def _digest(key: bytes, pin: str) -> str:
        return hmac.new(key, pin.encode(), hashlib.sha256).hexdigest()

    def _load(self) -> dict[str, dict[str, object]]:
        if self.path is None:
            return self._memory
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("refused PINs: cannot read %s (%s): starting afresh", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, dict[str, object]]) -> None:
        if self.path is None:
            self._memory = data
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.path.with_suffix(".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("refused PINs: cannot write %s (%s): a restart may try the same PIN once more "
                        "(never the last try)", self.path, exc)
            self._memory = data

    def refused_before(self, key: bytes, pin: str, tries_left: int) -> bool:
        """Whether this card refused this PIN and its tries have not gone up since."""
        entry = self._load().get(self._card(key)) or self._memory.get(self._card(key))
        if not entry:
            return False
        after = entry.get("tries_left")
        return entry.get("pin") == self._digest(key, pin) and isinstance(after, int) and tries_left <= after

    def remember(self, key: bytes, pin: str, tries_left: int) -> None:
        data = self._load()
        data[self._card(key)] = {"pin": self._digest(key, pin), "tries_left": tries_left}
        self._save(data)

    def forget(self, key: bytes) -> None:
        data = self._load()
        if data.pop(self._card(key), None) is not None:
            self._save(data)


def same_identity(card: SeTlsCard, slot: int, expected_key: bytes) -> bool:
    """Whether identity `slot` of `card` has the public key `expected_key` (GET DATA, no PIN used):
    call before verifying the PIN of a card that was put back."""
    return hmac.compare_digest(card.public_key(slot), expected_key)


def unlock(card: SeTlsCard, identity: str, pin: str, refused: RefusedPins,
           expected_key: bytes | None = None) -> bytes:
    """Finds `identity`, reads its tries, and VERIFYs `pin` only when that cannot block the card
    (module docstring); returns the identity's public key (give it back as `expected_key` when the
    card is reopened). PinRefusal, IdentityChanged or CardOpenError, each one sentence."""
    slot = card.find_identity(identity)
    status = card.status(slot)
    if not status.key_ready or not status.chain_length:
        raise CardOpenError(f"identity {identity!r} on card {card.name} has no key or no certificate chain")
    if not status.pin_set:
        raise CardOpenError(f"identity {identity!r} on card {card.name} has no PIN: personalise it first "
                            f"(python -m host.provision init)")
    key = card.public_key(slot)
    if expected_key is not None and not hmac.compare_digest(key, expected_key):
        raise IdentityChanged(f"card {card.name} holds another key for identity {identity!r} than the one "
                              f"this service unlocked: its PIN is not sent; restart the service to serve it")
    tries = status.pin_tries_left
    where = f"identity {identity!r} on card {card.name}"
    if tries == 0:
        raise PinRefusal(f"the PIN of {where} is blocked: unblock it with the PUK "
                         f"(python -m host.provision unblock-pin), then restart the service", 0)
    if tries == 1:
        raise PinRefusal(f"the PIN of {where} has 1 try left, which the service never uses: check the PIN "
                         f"it was given, use it once by hand (python -m host.provision change-pin) or set a "
                         f"new one (reset-pin), then restart the service", 1)
    if refused.refused_before(key, pin, tries):
        raise PinRefusal(f"wrong PIN for {where} (refused before, not sent again; {tries} tries left): "
                         f"put the right PIN in the service's credential and restart it", tries)
    try:
        card.verify_pin(slot, pin)
    except WrongPinError as exc:
        left = exc.tries_left
        refused.remember(key, pin, left)
        raise PinRefusal(f"wrong PIN for {where} ({left} {'try' if left == 1 else 'tries'} left): put the "
                         f"right PIN in the service's credential and restart it", left) from None
    except PinBlockedError:
        raise PinRefusal(f"the PIN of {where} is blocked: unblock it with the PUK "
                         f"(python -m host.provision unblock-pin), then restart the service", 0) from None
    refused.forget(key)
    card.slot = slot
    return key
