"""SE-TLS host: TLS servers whose handshake and keys live in a Java Card secure element.

Layers, bottom up (docs: /work/shared/ARCHITECTURE.md):
  host.apdu       ISO 7816-4 command/response APDUs, status words, ApduError
  host.channel    the one ISO 7816 channel interface, its implementations (PC/SC, vpcd) and the
                  stacked layers (GET RESPONSE, wrong Le, chaining, tracing); CardSession / select()
  host.simulator  jcardsim as a subprocess, direct (vpcd protocol) or behind pcscd + vpcd
  host.eap        sans-IO EAP / EAP-TLS framing and the peer state machine (RFC 3748, RFC 5216)
  host.agent      EapTlsTransport: TLS messages <-> EAP-TLS packets <-> APDUs
"""
