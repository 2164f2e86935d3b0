"""Running `python -m host.server` as a device service: its configuration file (`config`), the
systemd notifications and watchdog (`notify`), and a PIN that can never block the card (`pin`).

For the card supervisor that reopens cards (issue 15 item 4): `pin.unlock(card, identity, pin,
refused, expected_key=key)` verifies a card put back only if it holds the key unlocked before
(`pin.same_identity()` asks without a PIN), and `notify.Liveness.register(name, check)` makes the
watchdog's pings depend on the supervisor being alive (`host.server.serve(..., liveness=)`)."""
