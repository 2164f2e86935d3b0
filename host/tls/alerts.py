"""TLS alerts as exceptions, kept apart by who sent them (tlslite-ng's TLSLocalAlert and
TLSRemoteAlert; h11's LocalProtocolError and RemoteProtocolError).

- `LocalAlert`: our side (the card, or the host's record layer in tandem mode) sent the alert:
  it found something wrong with what the client sent.
- `RemoteAlert`: the client sent the alert.
"""

from __future__ import annotations

from host.tls.numbers import AlertDescription, AlertLevel


def _name(description: int) -> str:
    try:
        return AlertDescription(description).name.lower()
    except ValueError:
        return f"alert {description}"


class TlsAlert(Exception):
    """A TLS alert (RFC 5246 7.2) that ended, or will end, a session."""

    sender = ""

    def __init__(self, description: int, level: int = AlertLevel.FATAL, detail: str = "") -> None:
        self.description = description
        self.level = level
        words = f"{self.sender} sent {_name(description)}"
        if level == AlertLevel.WARNING:
            words += " (warning)"
        super().__init__(f"{words}: {detail}" if detail else words)


class LocalAlert(TlsAlert):
    """Our side (the card, or the host in tandem mode) sent this alert to the client."""

    sender = "the card"


class RemoteAlert(TlsAlert):
    """The client sent this alert."""

    sender = "the client"
