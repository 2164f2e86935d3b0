"""`make bench`: what a handshake costs the card, modeled on real cards, and the host's throughput.

Imports every layer; nothing imports it but `python -m host.bench` and the tests.
"""
