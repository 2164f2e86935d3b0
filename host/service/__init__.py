"""Running `python -m host.server` as a device service: its configuration file (`config`), the
systemd notifications and watchdog (`notify`), and a PIN that can never block the card (`pin`)."""
