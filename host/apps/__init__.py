"""Applications served over a `RecordLayer`: the device model, HTTPS (h11), CoAP over TLS
(RFC 8323), echo; each a sans-IO connection core driven by the one loop of `host.apps.pump`.

Imports `host.tls` (the record layer) and `host.se_tls` (`SessionInfo`, `Application`).
"""
