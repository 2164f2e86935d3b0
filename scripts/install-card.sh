#!/usr/bin/env bash
# Loads build/cap/setls.cap onto a real card with GlobalPlatformPro (gp), which is a separate
# download (martinpaljak/GlobalPlatformPro releases): set GP=/path/to/gp.jar, or put `gp` on PATH.
# READER=name selects the reader; extra gp options go in GP_OPTS (e.g. keys for a non-test card).
set -euo pipefail
cd "$(dirname "$0")/.."
cap=build/cap/setls.cap
if [[ ! -f $cap ]]; then
  echo "install-card: $cap is missing: build it with 'make applet' (needs a Java Card SDK)" >&2
  exit 2
fi
if [[ -n "${GP:-}" && "$GP" == *.jar ]]; then
  gp=(java -jar "$GP")
elif [[ -n "${GP:-}" ]]; then
  gp=("$GP")
elif command -v gp >/dev/null; then
  gp=(gp)
else
  echo "install-card: GlobalPlatformPro not found: set GP=/path/to/gp.jar (from the GlobalPlatformPro releases) or put gp on PATH" >&2
  exit 2
fi
reader=()
[[ -n "${READER:-}" ]] && reader=(--reader "$READER")
# shellcheck disable=SC2086
"${gp[@]}" "${reader[@]}" ${GP_OPTS:-} --force --install "$cap"
echo "install-card: installed; personalise with: python -m host.provision --reader '${READER:-<reader>}' --pin <PIN>"
