"""The SE-TLS applet seen from the host: its protocol numbers, its commands, the EAP-TLS
transport that carries TLS flights to it, and the one place where status words become errors.

  numbers     CLA/INS, SELECT tags, capabilities, data tags, policy bits, counters, own SWs
  errors      the error boundary: status word -> named exception
  session     SELECT and the capabilities the applet announces; `CardSession.send`
  eap         sans-IO EAP / EAP-TLS framing and the peer state machine (RFC 3748, RFC 5216)
  transport   `EapTlsTransport`: TLS messages <-> EAP-TLS packets <-> PROCESS EAP PACKET APDUs
  operator    the operator session, host side: signed challenge, ECDH + HKDF keys, MACs, secrets
  commands    `SeTlsCard`: every command as a method; `open_cards()`
  cost_model  what the card's operations cost on real cards (bench/card-op-costs.csv), pure
  sim_speed   `PacedChannel`: a simulated card that answers at a real card's modeled speed

Imports `host.iso7816` and the TLS data types of `host.tls`; never `host.se_tls` or above.
"""

from host.card.commands import CardOpenError, SeTlsCard, open_cards

__all__ = ["CardOpenError", "SeTlsCard", "open_cards"]
