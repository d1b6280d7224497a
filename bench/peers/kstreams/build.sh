#!/usr/bin/env bash
# build.sh — build the Kafka Streams word-count peer into one runnable fat jar:
#   bench/peers/kstreams/target/wordcount.jar
# Idempotent: does nothing when the jar is newer than pom.xml, build.sh and
# everything under src/. Needs Java 17+ and Maven (`mvn`) on PATH.
# Prints the jar's absolute path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$here/target/wordcount.jar"

up_to_date() {
  [[ -s "$jar" ]] || return 1
  # Any source/build file newer than the jar means a rebuild.
  [[ -z "$(find "$here/pom.xml" "$here/build.sh" "$here/src" -newer "$jar" -print -quit)" ]]
}

if ! up_to_date; then
  for tool in java mvn; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "build.sh: $tool not found: install a Java 17+ JDK and Maven (e.g. apt-get install -y openjdk-17-jdk-headless maven)" >&2
      exit 1
    }
  done
  (cd "$here" && mvn -q -B package -DskipTests) >&2
  [[ -s "$jar" ]] || { echo "build.sh: $jar was not produced" >&2; exit 1; }
  touch "$jar"
fi

echo "$jar"
