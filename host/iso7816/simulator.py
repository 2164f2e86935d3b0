"""jcardsim as a subprocess, running the applet of build/applet/classes.

Two ways to reach it:
  SimulatorChannel   direct: the host listens on a free port and jcardsim connects to it with the
                     vpcd protocol (no pcscd needed). Start-up takes well under a second.
  attach_to_pcscd()  jcardsim connects to pcscd's vpcd driver (port 35963), the card appears in
                     the "Virtual PCD" reader, and a PcscChannel (pyscard) drives it like
                     a real one.
Either way the applet is loaded by the configuration and installed with jcardsim's install APDU
(80 B8), readiness is the actual connection (no sleeps), and the process (its whole group) is
killed on close(), at interpreter exit, and, started from the main thread, when the parent dies.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from host.iso7816.apdu import CommandApdu
from host.iso7816.channel import Channel, ChannelError, NoReaderError, exchange
from host.iso7816.pcsc import PcscChannel, list_readers, pcsc_errors
from host.iso7816.quirks import SIMULATOR_ATR, SIMULATOR_INSTALL_PARAMETERS
from host.iso7816.vpcd import VpcdChannel
from host.paths import PROJECT_ROOT, AppletInfo, applet_info

log = logging.getLogger(__name__)

JCARDSIM_JAR = PROJECT_ROOT / "build" / "lib" / "jcardsim.jar"
APPLET_CLASSES = PROJECT_ROOT / "build" / "applet" / "classes"
VPCD_PORT = 0x8C7B  # 35963, /etc/reader.conf.d/vpcd (Debian's vsmartcard-vpcd)
VPCD_READER_PREFIX = "Virtual PCD"
CLA_JCARDSIM = 0x80
INS_JCARDSIM_INSTALL = 0xB8  # jcardsim's own install command (not the applet's)
_PR_SET_PDEATHSIG = 1
_OUTPUT_TAIL = 3000


class SimulatorError(ChannelError):
    """jcardsim could not be started, reached or set up."""


def java_executable() -> str:
    """java from JAVA_HOME, else from PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise SimulatorError("no java: set JAVA_HOME or put java on PATH (make setup)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (for jcardsim's reloader, which we cannot hand a socket)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def install_command(aid: bytes, parameters: bytes = b"") -> bytes:
    """jcardsim's install APDU: 80 B8 00 00 Lc [len AID] AID 00 [len parameters] parameters, the
    install data of GlobalPlatform (AID, no privileges, the application's parameters: docs/apdu.md
    "Install parameters"), which jcardsim hands to install() as it is; no parameters, no third LV."""
    if len(aid) > 16 or len(parameters) > 255:
        raise ValueError(f"AID of {len(aid)} bytes (5-16) or parameters of {len(parameters)} bytes (0-255)")
    data = bytes((len(aid),)) + aid + b"\0" + (bytes((len(parameters),)) + parameters if parameters else b"")
    return CommandApdu(CLA_JCARDSIM, INS_JCARDSIM_INSTALL, data=data).encode()


def install_applet(channel: Channel, aid: bytes, parameters: bytes = SIMULATOR_INSTALL_PARAMETERS) -> None:
    """Installs the applet that jcardsim's configuration loaded with these install parameters (by
    default the simulator's, quirks.SIMULATOR_INSTALL_PARAMETERS); it answers the AID and 9000.
    Raises SimulatorError with the status word when the applet refuses them."""
    response = exchange(channel, install_command(aid, parameters))
    if not response.ok or response.data != aid:
        raise SimulatorError(
            f"jcardsim did not install {aid.hex().upper()}: {response.encode().hex().upper()}"
        )


def _load_prctl() -> Callable[[int, int], int] | None:
    if sys.platform != "linux":
        return None
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()  # resolved here: the child between fork and exec only calls it


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL when the parent (thread) dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class JcardsimProcess:
    """One jcardsim (VSmartCard) process that connects to host:port as a vpcd card."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        applet: AppletInfo | None = None,
        classes: Path = APPLET_CLASSES,
        jar: Path = JCARDSIM_JAR,
        atr: bytes = SIMULATOR_ATR,
    ) -> None:
        self.host, self.port = host, port
        self.applet = applet if applet is not None else applet_info()
        self.classes, self.jar, self.atr = classes, jar, atr
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def config(self, reloader_port: int) -> str:
        return "\n".join(
            [
                f"com.licel.jcardsim.card.applet.0.AID={self.applet.aid.hex().upper()}",
                f"com.licel.jcardsim.card.applet.0.Class={self.applet.applet_class}",
                f"com.licel.jcardsim.card.ATR={self.atr.hex().upper()}",
                f"com.licel.jcardsim.vsmartcard.host={self.host}",
                f"com.licel.jcardsim.vsmartcard.port={self.port}",
                f"com.licel.jcardsim.vsmartcard.reloader.port={reloader_port}",
                "",
            ]
        )

    def start(self) -> None:
        self._check_files()
        self._dir = tempfile.TemporaryDirectory(prefix="setls-jcardsim-")
        workdir = Path(self._dir.name)
        (workdir / "sim.cfg").write_text(self.config(free_port(self.host)), encoding="ascii")
        command = [
            java_executable(),
            "-Dcom.licel.jcardsim.randomdata.secure=1",
            "-cp",
            f"{self.jar}{os.pathsep}{self.classes}",
            "com.licel.jcardsim.remote.VSmartCard",
            "sim.cfg",
        ]
        main_thread = threading.current_thread() is threading.main_thread()
        with open(workdir / "output.log", "wb") as output:
            self._process = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if main_thread and _PRCTL is not None else None,
            )
        atexit.register(self.stop)
        log.info("jcardsim pid %d -> %s:%d", self._process.pid, self.host, self.port)

    def _check_files(self) -> None:
        if not self.jar.is_file():
            raise SimulatorError(f"{self.jar} is missing: run scripts/fetch-jars.sh (make setup)")
        main_class = self.applet.applet_class.replace(".", "/") + ".class"
        if not (self.classes / main_class).is_file():
            raise SimulatorError(f"{self.classes / main_class} is missing: run make classes")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The jcardsim JVM's process id while it runs (tests read its heap with jcmd), else None."""
        return self._process.pid if self._process is not None else None

    def output(self) -> str:
        """The tail of jcardsim's stdout and stderr (it always prints a harmless
        ClassNotFoundException about GpSimulatorRuntime)."""
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "output.log"
        try:
            return path.read_bytes()[-_OUTPUT_TAIL:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Kills the process group (jcardsim loops on a closed peer, so it must go); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.info("jcardsim pid %d stopped", process.pid)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _failure(what: str, error: Exception, process: JcardsimProcess) -> SimulatorError:
    return SimulatorError(f"{what}: {error}\n--- jcardsim output ---\n{process.output()}")


class SimulatorChannel(VpcdChannel):
    """A VpcdChannel with its own jcardsim process, applet installed; close() kills the process."""

    def __init__(
        self,
        *,
        classes: Path = APPLET_CLASSES,
        jar: Path = JCARDSIM_JAR,
        applet: AppletInfo | None = None,
        startup_timeout: float = 30.0,
        timeout: float = 30.0,
        install_parameters: bytes = SIMULATOR_INSTALL_PARAMETERS,
    ) -> None:
        super().__init__(timeout=timeout)
        self.applet = applet if applet is not None else applet_info()
        host, port = self.address
        self.process = JcardsimProcess(host, port, applet=self.applet, classes=classes, jar=jar)
        try:
            self.process.start()
            self.wait_for_card(startup_timeout, alive=self.process.alive)
            install_applet(self, self.applet.aid, install_parameters)
        except ChannelError as e:
            error = _failure("jcardsim did not come up", e, self.process)
            self.close()
            raise error from e
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.process.stop()
        super().close()


class PcscSimulatorChannel(PcscChannel):
    """A PcscChannel on the vpcd reader whose card is a jcardsim process it owns."""

    def __init__(
        self, reader: str, process: JcardsimProcess, *, extended: bool | None = None
    ) -> None:
        self.process = process
        super().__init__(reader, extended=extended)

    def close(self) -> None:
        super().close()
        self.process.stop()


def vpcd_reader_name(port: int = VPCD_PORT) -> str:
    """The pcscd reader fed by vpcd's `port`: "Virtual PCD 00 00" for 35963, "... 01" for 35964."""
    slot = port - VPCD_PORT
    names = [n for n in list_readers() if n.startswith(VPCD_READER_PREFIX)]
    matches = [n for n in names if n.endswith(f" {slot:02X}")]
    if not matches:
        raise NoReaderError(
            f"no {VPCD_READER_PREFIX!r} reader for port {port} (readers: {names}); start pcscd "
            "with the vsmartcard vpcd driver: scripts/pcscd-vpcd.sh start"
        )
    return matches[0]


def card_present(reader: str, timeout: float) -> bool:
    """Waits up to `timeout` seconds for a card in the reader (PC/SC status change, no polling)."""
    from smartcard.CardRequest import CardRequest
    from smartcard.Exceptions import CardRequestTimeoutException

    try:
        CardRequest(readers=[reader], timeout=timeout).waitforcard()
    except CardRequestTimeoutException:
        return False
    except pcsc_errors() as e:
        raise ChannelError(f"cannot watch {reader!r} for a card: {e}") from None
    return True


def _wait_for_card(reader: str, process: JcardsimProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not card_present(reader, timeout=0.5):
        if not process.alive():
            raise SimulatorError(f"jcardsim exited before {reader!r} saw a card")
        if time.monotonic() > deadline:
            raise SimulatorError(f"{reader!r} saw no card within {timeout} s")


def attach_to_pcscd(
    port: int = VPCD_PORT,
    *,
    reader: str | None = None,
    classes: Path = APPLET_CLASSES,
    jar: Path = JCARDSIM_JAR,
    applet: AppletInfo | None = None,
    extended: bool | None = None,
    startup_timeout: float = 30.0,
    install_parameters: bytes = SIMULATOR_INSTALL_PARAMETERS,
) -> PcscSimulatorChannel:
    """Starts jcardsim as the card of pcscd's vpcd reader on `port`, installs the applet, and
    returns a PcscChannel to it that kills jcardsim on close()."""
    name = reader if reader is not None else vpcd_reader_name(port)
    if card_present(name, timeout=0):
        raise SimulatorError(f"{name!r} already has a card: another simulator uses port {port}")
    info = applet if applet is not None else applet_info()
    process = JcardsimProcess("127.0.0.1", port, applet=info, classes=classes, jar=jar)
    channel: PcscSimulatorChannel | None = None
    try:
        process.start()
        _wait_for_card(name, process, startup_timeout)
        channel = PcscSimulatorChannel(name, process, extended=extended)
        install_applet(channel, info.aid, install_parameters)
    except ChannelError as e:
        error = _failure(f"jcardsim did not come up in {name!r}", e, process)
        _close(channel, process)
        raise error from e
    except BaseException:
        _close(channel, process)
        raise
    return channel


def _close(channel: Channel | None, process: JcardsimProcess) -> None:
    if channel is not None:
        channel.close()
    process.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m host.iso7816.simulator [--vpcd-port P] -- COMMAND...`: runs COMMAND while a
    simulated card sits in pcscd's vpcd reader on port P ("{reader}" in COMMAND becomes the reader's
    name), so that a suite can drive it like a real card (`pytest --reader "{reader}"`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m host.iso7816.simulator", description=main.__doc__)
    parser.add_argument("--vpcd-port", type=int, default=VPCD_PORT + 1, metavar="P",
                        help=f"the vpcd port (default {VPCD_PORT + 1}: reader \"Virtual PCD 00 01\")")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        channel = attach_to_pcscd(args.vpcd_port)
    except ChannelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with channel:
        reader = channel.reader
        log.info("simulated card in %r", reader)
        return subprocess.call([arg.replace("{reader}", reader) for arg in command])


__all__ = [
    "JcardsimProcess",
    "PcscSimulatorChannel",
    "SimulatorChannel",
    "SimulatorError",
    "attach_to_pcscd",
    "install_applet",
    "java_executable",
    "vpcd_reader_name",
]


if __name__ == "__main__":
    sys.exit(main())
