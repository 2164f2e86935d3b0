"""openssl s_client driven as a user would: once the handshake is verified it types a line, then
waits until the server echoes it back (or a timeout, or s_client ends). Shared by the TLS, DTLS and
resumption tests."""
from __future__ import annotations

import re
import selectors
import subprocess
import time

# What s_client prints once the handshake is done and the server's chain checked (RFC 5246 7.4.9
# complete): the session block ends with a line of dashes after "Verify return code".
HANDSHAKE_DONE = re.compile(rb"Verify return code.*?\n---", re.DOTALL)


def talk(argv: list[str], message: bytes, copies: int = 1, timeout: float = 60.0) -> str:
    """Runs `argv` (an `openssl s_client ...` command line), sends `message` + newline once the
    handshake is done, and returns everything it printed (stdout and stderr) once `copies` echoes
    of `message` came back, s_client ended, or `timeout` seconds passed."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdin is not None and process.stdout is not None
    output = b""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    sent = False
    try:
        while time.monotonic() < deadline:
            if not sent and HANDSHAKE_DONE.search(output):
                sent = True
                try:
                    process.stdin.write(message + b"\n")
                    process.stdin.flush()
                except BrokenPipeError:   # s_client ended: the handshake failed; read what it printed
                    pass
            if sent and output.split(b"Verify return code")[-1].count(message) >= copies:
                break
            if not selector.select(timeout=0.2):
                if process.poll() is not None:
                    break
                continue
            chunk = process.stdout.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            output += chunk
    finally:
        process.kill()
        process.wait()
    return output.decode(errors="replace")
