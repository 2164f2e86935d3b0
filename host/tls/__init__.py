"""TLS seen from the host: the record framing, the handshake messages the host reads, host record
protection (tandem mode) and the `RecordLayer`s the applications are served over.

  numbers        content types, handshake types, alerts, cipher suites (RFC 5246 and others)
  alerts         `LocalAlert` (our side sent it) and `RemoteAlert` (the client sent it)
  records        record framing and flight assembly, sans-IO (RFC 5246 6.2)
  handshake      the ServerHello fields and alerts the host reports
  protection     record protection in the host with keys the card exported (GCM, CCM, CBC)
  record_layer   `RecordLayer`: recv/decrypt/encrypt/send, in the card or in the host

DTLS (RFC 6347) framing and its record layer belong here too. Imports nothing of the host but
`host.paths`: the card is reached through the `RecordCard` protocol, never imported.
"""
