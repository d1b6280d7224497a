#!/usr/bin/env bash
# stop.sh — stop a test broker started by start.sh.
#
# Usage: scripts/kafka/stop.sh DIR
#
# Sends SIGTERM to the PID in DIR/broker.pid, waits up to
# ${EDDY_KAFKA_STOP_TIMEOUT:-20} seconds for a clean shutdown, then SIGKILLs.
# Idempotent: a missing pid file or an already dead process is success.
# DIR itself is left in place (the caller removes it).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir="$1"
pidfile="$dir/broker.pid"
timeout="${EDDY_KAFKA_STOP_TIMEOUT:-20}"

[[ -f "$pidfile" ]] || exit 0
pid="$(cat "$pidfile")"
if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
  echo "stop.sh: ignoring malformed pid file $pidfile" >&2
  rm -f "$pidfile"

# Publish the AppCDS archive the broker dumped at exit (see start.sh), but
# only after a clean exit: a SIGKILLed JVM may have left a partial file.
pending="$dir/cds.pending"
if [[ -f "$pending" ]]; then
  { read -r tmp && read -r final; } <"$pending" || true
  if [[ -n "${tmp:-}" && -n "${final:-}" && -s "$tmp" ]] && ! $killed; then
    mv -f "$tmp" "$final"
  fi
  [[ -z "${tmp:-}" ]] || rm -f "$tmp"
  rm -f "$pending"
fi
  exit 0
fi

# is_ours: the PID is alive and still is a Kafka broker (guards against the
# PID having been reused by an unrelated process after the broker died).
is_ours() {
  kill -0 "$pid" 2>/dev/null || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 0 # no /proc: trust the pid file
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka'
}

killed=false
if is_ours; then
  kill -TERM "$pid" 2>/dev/null || true
  # Poll every 0.1 s up to the timeout.
  for ((i = 0; i < timeout * 10; i++)); do
    is_ours || break
    sleep 0.1
  done
  if is_ours; then
    echo "stop.sh: broker $pid did not stop within ${timeout}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    killed=true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
fi

rm -f "$pidfile"

# Publish the AppCDS archive the broker dumped at exit (see start.sh), but
# only after a clean exit: a SIGKILLed JVM may have left a partial file.
pending="$dir/cds.pending"
if [[ -f "$pending" ]]; then
  { read -r tmp && read -r final; } <"$pending" || true
  if [[ -n "${tmp:-}" && -n "${final:-}" && -s "$tmp" ]] && ! $killed; then
    mv -f "$tmp" "$final"
  fi
  [[ -z "${tmp:-}" ]] || rm -f "$tmp"
  rm -f "$pending"
fi
