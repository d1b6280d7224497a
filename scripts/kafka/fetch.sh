#!/usr/bin/env bash
# fetch.sh — download the Apache Kafka broker's jars for the test broker.
#
# Usage: scripts/kafka/fetch.sh
#
# Resolves the runtime class path declared in pom.xml (next to this script)
# with Maven and copies it into "$CACHE/lib", where
#   CACHE = ${EDDY_KAFKA_CACHE:-$HOME/.cache/eddy/kafka-<version>}
# Prints the cache directory on stdout.
#
# Idempotent and safe to run concurrently (e.g. from several `go test`
# packages at once): when "$CACHE/lib/.eddy-complete" exists nothing is
# done; otherwise the jars are copied into a scratch directory under a lock
# and published with a single rename, so a half-filled lib/ is never seen.
set -euo pipefail

# Keep in step with <kafka.version> in pom.xml.
KAFKA_VERSION=4.1.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${EDDY_KAFKA_CACHE:-$HOME/.cache/eddy/kafka-$KAFKA_VERSION}"
lib="$cache/lib"
marker="$lib/.eddy-complete"

# Fast path: already fetched.
if [[ -f "$marker" ]]; then
  echo "$cache"
  exit 0
fi

# Both tools are needed only to fetch (java is needed later to run, too):
# fail early with a message that says what to install.
missing=()
command -v java >/dev/null 2>&1 || missing+=("java (a Java 17+ runtime, e.g. Debian package openjdk-17-jre-headless)")
command -v mvn >/dev/null 2>&1 || missing+=("mvn (Apache Maven, e.g. Debian package maven)")
if ((${#missing[@]} > 0)); then
  {
    echo "scripts/kafka/fetch.sh: cannot fetch the Kafka broker jars; missing:"
    for m in "${missing[@]}"; do echo "  - $m"; done
    echo "Install them (e.g. 'apt-get install -y openjdk-17-jre-headless maven') and retry."
  } >&2
  exit 1
fi

mkdir -p "$cache"

# Serialise concurrent fetchers. flock(1) is util-linux; without it we still
# rely on the atomic rename below for correctness.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.fetch.lock"
  flock 9
  # Someone else may have finished while we waited.
  if [[ -f "$marker" ]]; then
    echo "$cache"
    exit 0
  fi
fi

tmp="$(mktemp -d "$cache/lib.tmp.XXXXXX")"
chmod 755 "$tmp" # mktemp makes it 0700; the cache may be shared
trap 'rm -rf "$tmp"' EXIT

echo "scripts/kafka/fetch.sh: fetching Kafka $KAFKA_VERSION jars into $lib (one-time)..." >&2
# Maven's output goes to a log that is shown only on failure (with -q it is
# just errors, plus stray ANSI resets from some Maven builds).
mvnlog="$cache/fetch.log"
if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null >"$mvnlog" 2>&1; then
  cat "$mvnlog" >&2
  echo "scripts/kafka/fetch.sh: 'mvn dependency:copy-dependencies' failed (is Maven Central reachable? output above, also in $mvnlog)" >&2
  exit 1
fi

# Sanity check: the broker jar must be there.
if ! compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null; then
  echo "scripts/kafka/fetch.sh: Maven finished but no kafka_2.13 jar in $tmp" >&2
  exit 1
fi

# Publish: write the marker inside the scratch dir, then rename it into place.
echo "$KAFKA_VERSION" >"$tmp/.eddy-complete"
rm -rf "$lib"               # a stale, unmarked leftover from an interrupted run
mv -T "$tmp" "$lib"
trap - EXIT

echo "$cache"
