#!/usr/bin/env bash
# Installs SE-TLS as a systemd service (make install-service PREFIX=/usr/local):
#   $PREFIX/lib/systemd/system/setls.service    the unit (Type=notify, watchdog, hardening)
#   $SYSCONFDIR/setls/setls.toml                the configuration (kept if it exists)
#   $SYSCONFDIR/polkit-1/rules.d/50-setls-pcscd.rules   lets the service's user reach pcscd (polkit builds)
# The service runs this checkout's code with its virtual environment (make setup first).
# DESTDIR stages the files elsewhere (packaging, tests); then systemctl is not called.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${PREFIX:-/usr/local}"
SYSCONFDIR="${SYSCONFDIR:-/etc}"
DESTDIR="${DESTDIR:-}"
SETLS_HOME="${SETLS_HOME:-$HERE}"
PYTHON="${PYTHON:-$SETLS_HOME/.venv/bin/python}"

fail() { echo "install-service: $*" >&2; exit 2; }
[[ "$PREFIX" = /* ]] || fail "PREFIX must be an absolute path, not '$PREFIX'"
[[ "$SYSCONFDIR" = /* ]] || fail "SYSCONFDIR must be an absolute path, not '$SYSCONFDIR'"
[[ -x "$PYTHON" ]] || fail "no Python at $PYTHON: run make setup first (or give PYTHON=...)"
[[ -f "$SETLS_HOME/host/server.py" ]] || fail "$SETLS_HOME is not an SE-TLS checkout (SETLS_HOME=...)"
if [[ -z "$DESTDIR" && $EUID -ne 0 ]]; then
    fail "installing into $PREFIX and $SYSCONFDIR needs root: sudo make install-service PREFIX=$PREFIX"
fi
case "$SETLS_HOME" in   # the unit hides /home and /root unless the code lives there
    /home/*|/root/*|/run/user/*) protect_home=read-only ;;
    *) protect_home=yes ;;
esac

unit_dir="$DESTDIR$PREFIX/lib/systemd/system"
conf_dir="$DESTDIR$SYSCONFDIR/setls"
rules_dir="$DESTDIR$SYSCONFDIR/polkit-1/rules.d"
install -d -m 0755 "$unit_dir" "$conf_dir" "$rules_dir"
sed -e "s|@SETLS_HOME@|$SETLS_HOME|g" -e "s|@PYTHON@|$PYTHON|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" \
    -e "s|@PROTECT_HOME@|$protect_home|g" "$HERE/packaging/setls.service" > "$unit_dir/setls.service"
chmod 0644 "$unit_dir/setls.service"
if [[ -e "$conf_dir/setls.toml" ]]; then
    echo "kept $conf_dir/setls.toml (the new example: $HERE/packaging/setls.toml)"
else
    install -m 0644 "$HERE/packaging/setls.toml" "$conf_dir/setls.toml"
fi
install -m 0644 "$HERE/packaging/50-setls-pcscd.rules" "$rules_dir/50-setls-pcscd.rules"
echo "installed $unit_dir/setls.service, $conf_dir/setls.toml, $rules_dir/50-setls-pcscd.rules"

if [[ -z "$DESTDIR" && -d /run/systemd/system ]]; then
    systemctl daemon-reload
fi
cat <<NEXT
next:
  edit $SYSCONFDIR/setls/setls.toml (readers, ports), then: $PYTHON -m host.server --config $SYSCONFDIR/setls/setls.toml --check
  sudo sh -c 'umask 077; cat > $SYSCONFDIR/setls/pin'     # type the PIN, Enter, Ctrl-D
  sudo systemctl enable --now setls && systemctl status setls
NEXT
