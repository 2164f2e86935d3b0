"""SE-TLS host: TLS servers whose handshake and keys live in a Java Card secure element.

Layers, bottom up; a module imports only from its own package and those below it
(tests/test_layers.py checks it; docs/architecture.md draws it):

  host.paths        where the project's files are; the applet's AID (applet/applet.properties)
  host.iso7816      APDUs, the one channel interface, PC/SC, vpcd, the simulator, stacked layers,
                    quirks by ATR or reader name
  host.tls          TLS numbers, record framing, alerts (local/remote), host record protection,
                    the RecordLayers; DTLS belongs here too
  host.card         the applet's numbers and commands, the operator session's crypto, the EAP-TLS
                    transport, the error boundary (imports iso7816 and tls)
  host.se_tls       the paper's API: TlsTandem, ServerTLS, GenericServer, CardSlot; the pool's
                    supervisor (cards lost and reopened) and its events
  host.metrics      Prometheus metrics of the pool (prometheus_client): its events and state
  host.dtls         DTLS 1.2 over UDP on the same tandem: cookies, associations by address,
                    retransmission, the host's DTLS record layer (DtlsServer, DtlsAssociation)
  host.apps         device model, HTTPS (h11), CoAP over TLS, echo, the one pump loop
  host.provision    `python -m host.provision`: the card's lifecycle (init, keygen, CSRs the card signs,
                    chains, CAs, PSKs, policy, PIN/PUK, wipe); with host.demo_pki for the demo CA
  host.logs         logging for daemons: a rate limit that counts and summarises repeated lines;
                    text or one JSON object per line
  host.service      the server as a device service: its TOML configuration, sd_notify and the
                    watchdog, a PIN that is never blocked (imports card, and provision's demo names)
  host.server       `python -m host.server`: the servers on simulated cards or readers
  host.bench        `python -m host.bench`: measurement, cost model, plots, report
"""
