"""ISO 7816: APDUs, the one channel interface, its implementations and the stacked layers.

  apdu        command and response APDUs, ISO status words, `ApduError` (pure data)
  channel     `Channel` (transmit/reset/atr/close) and the channel errors
  layers      GET RESPONSE (61xx), wrong Le (6Cxx), command chaining, tracing; `build_stack()`
  quirks      what a card or reader does differently, chosen by ATR or reader name
  pcsc        PC/SC readers through pyscard (real readers, the pcscd + vpcd virtual reader)
  vpcd        the vsmartcard protocol, reader side (a virtual card connects to the host)
  simulator   jcardsim as a child process, direct or behind pcscd + vpcd

The bottom layer: it imports nothing of the host but `host.paths`, and knows nothing of the
applet but its AID (for installing it in the simulator).
"""
