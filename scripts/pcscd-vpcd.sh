#!/usr/bin/env bash
# Makes sure pcscd runs with the vsmartcard vpcd driver, so that a simulated card (jcardsim, see
# host/simulator.py attach_to_pcscd) shows up in the PC/SC reader "Virtual PCD 00 00" (port 35963).
#   scripts/pcscd-vpcd.sh start    start pcscd if it is not running (needs root), wait for the reader
#   scripts/pcscd-vpcd.sh stop     stop pcscd, only if this script started it
#   scripts/pcscd-vpcd.sh status   exit 0 if the vpcd reader is listed
# Idempotent. Exit status: 0 ready, 1 failed, 2 cannot (not root, or vpcd not installed).
set -euo pipefail

VPCD_CONF=/etc/reader.conf.d/vpcd   # installed by Debian's vsmartcard-vpcd
READER_PREFIX="Virtual PCD"
WAIT_SECONDS=${PCSCD_WAIT_SECONDS:-15}
STATE_FILE=${PCSCD_VPCD_STATE:-/run/setls-pcscd-vpcd.pid}

say() { echo "pcscd-vpcd: $*" >&2; }

# The running pcscd, zombies left out (a container's init may not reap them).
pcscd_pid() {
  local pid
  for pid in $(pgrep -x pcscd || true); do
    if [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
      echo "$pid"
      return
    fi
  done
}

# Lists PC/SC readers; pcsc_scan -r prints "N: name" lines and exits.
readers() {
  if command -v pcsc_scan >/dev/null 2>&1; then
    timeout 5 pcsc_scan -r 2>/dev/null || true
  fi
}

reader_listed() { readers | grep -q "$READER_PREFIX"; }

# Bounded wait: polls the reader list until it shows the vpcd reader or WAIT_SECONDS pass.
wait_for_reader() {
  local deadline=$((SECONDS + WAIT_SECONDS))
  until reader_listed; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

start() {
  if reader_listed; then
    say "ready: $(readers | grep "$READER_PREFIX" | head -n1)"
    return 0
  fi
  if [[ ! -f $VPCD_CONF ]]; then
    say "no $VPCD_CONF: install vsmartcard-vpcd (scripts/setup.sh does)"
    return 2
  fi
  if ! command -v pcsc_scan >/dev/null 2>&1; then
    say "pcsc_scan is missing: install pcsc-tools (scripts/setup.sh does)"
    return 2
  fi
  if [[ -n $(pcscd_pid) ]]; then
    say "pcscd runs (pid $(pcscd_pid)) but lists no '$READER_PREFIX' reader;"
    say "it was started before vpcd was installed or with another configuration: restart it"
    return 1
  fi
  if [[ $(id -u) -ne 0 ]]; then
    say "pcscd is not running and starting it needs root: sudo $0 start"
    say "(tests that need the virtual reader are skipped meanwhile)"
    return 2
  fi
  pcscd   # daemonizes; reads /etc/reader.conf.d, so the vpcd reader comes up with it
  if ! wait_for_reader; then
    say "pcscd started but listed no '$READER_PREFIX' reader within ${WAIT_SECONDS}s"
    return 1
  fi
  pcscd_pid > "$STATE_FILE"
  say "started pcscd (pid $(cat "$STATE_FILE")): $(readers | grep "$READER_PREFIX" | head -n1)"
}

stop() {
  if [[ ! -f $STATE_FILE ]]; then
    say "pcscd was not started by this script: left alone"
    return 0
  fi
  local pid
  pid=$(cat "$STATE_FILE")
  if [[ -n $pid && $(pcscd_pid) == "$pid" ]]; then
    kill "$pid"
    local deadline=$((SECONDS + WAIT_SECONDS))
    while [[ $(pcscd_pid) == "$pid" ]] && ((SECONDS < deadline)); do
      sleep 0.1
    done
    say "stopped pcscd (pid $pid)"
  fi
  rm -f "$STATE_FILE"
}

status() {
  if reader_listed; then
    say "ready: pcscd pid $(pcscd_pid), $(readers | grep "$READER_PREFIX" | tr '\n' ';')"
    return 0
  fi
  local pid
  pid=$(pcscd_pid)
  say "not ready: pcscd pid ${pid:-none}, no '$READER_PREFIX' reader"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 64 ;;
esac
