#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
#   Debian packages (JDK 17, ant, maven, pcscd, vpcd, swig, openssl, curl, chromium),
#   the pinned jars of scripts/jars.lock, and the Python virtual environment .venv/.
# Run as root (or with sudo available) for the apt step; the rest needs no privilege.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openjdk-17-jdk-headless ant maven pcscd libpcsclite-dev swig vsmartcard-vpcd
              pcsc-tools openssl curl chromium python3-venv
              systemd    # systemd-analyze verify checks the unit (~10 MB; installing it starts nothing)
              autoconf automake libtool)   # DTLSSocket (aiocoap's coaps:// client) builds tinydtls from source

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

./scripts/fetch-jars.sh

# The virtual environment is rebuilt when requirements.txt changes.
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || "$(cat $stamp)" != "$want" ]]; then
  echo "setup: creating .venv from requirements.txt"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > $stamp
fi
