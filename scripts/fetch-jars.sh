#!/usr/bin/env bash
# Fetches the pinned Java artifacts of scripts/jars.lock from Maven Central into build/lib/
# and checks each against its SHA-256. Idempotent: a jar already there with the right hash stays.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/lib
while read -r coord sha; do
  [[ -z "$coord" || "$coord" == \#* ]] && continue
  IFS=: read -r group artifact version <<<"$coord"
  jar="build/lib/$artifact.jar"
  if [[ -f "$jar" ]] && echo "$sha  $jar" | sha256sum -c --quiet - 2>/dev/null; then
    continue
  fi
  echo "fetch-jars: $coord"
  mvn -q -B dependency:copy -Dartifact="$coord" -Dtransitive=false \
      -DoutputDirectory=build/lib -Dmdep.stripVersion=true >/dev/null
  if ! echo "$sha  $jar" | sha256sum -c --quiet -; then
    echo "fetch-jars: $jar does not match the SHA-256 pinned in scripts/jars.lock" >&2
    exit 1
  fi
done < scripts/jars.lock
