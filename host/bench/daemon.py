"""Starting and stopping daemons of this package that announce readiness on a line of their own
('ready', as `python -m host.server` prints once it listens): for the tests and the benchmark.
No fixed sleeps: the caller waits for the line, or for the process to die."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from host.paths import PROJECT_ROOT

READY_LINE = "ready"


@dataclass
class ReadyProcess:
    """A `python ARGS` child in its own process group, its merged output collected line by line."""

    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_ready(args: list[str], timeout: float, what: str = "the server") -> ReadyProcess:
    """Starts `python ARGS` and returns once it printed its ready line; raises RuntimeError with
    its output if it exits or stays silent for `timeout` seconds."""
    process = subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    daemon = ReadyProcess(process)
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            daemon.log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if line.strip() == READY_LINE:
            return daemon
    daemon.stop()
    raise RuntimeError(f"{what} did not become ready:\n" + "".join(daemon.log[-30:]))
