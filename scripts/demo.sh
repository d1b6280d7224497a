#!/usr/bin/env bash
# The demo behind `make demo`: start a worker on the embedded dev broker, wait
# until it is RUNNING, show `workerctl status` and a grpcurl call, then stop it
# with SIGINT and show that it exits cleanly. Interactive: waits for Ctrl-C.
# Non-interactive (no terminal, or DEMO_AUTO=1): stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
APP=${APP:-examples/demo/app.yaml}
WORK=$(mktemp -d)
GRPC=${DEMO_GRPC:-127.0.0.1:6066}
HTTP=${DEMO_HTTP:-127.0.0.1:6067}
export EDDY_ADDR=$GRPC

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting a worker on the embedded broker ($APP)"
# setsid: the worker gets its own session, so a Ctrl-C reaches it once, from
# the trap below, and not a second time from the terminal (which would mean
# "exit now").
setsid "$BIN/worker" -c "$APP" --grpc "$GRPC" --http "$HTTP" --data-dir "$WORK/data" \
	--addr-file "$WORK/addr.json" 2>"$WORK/worker.log" &
WPID=$!
APID=
cleanup() { kill -9 "$WPID" $APID 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Wait (bounded) until the worker reports RUNNING.
for _ in $(seq 1 150); do
	if "$BIN/workerctl" status -o json 2>/dev/null | grep -q '"WORKER_STATE_RUNNING"'; then
		break
	fi
	if ! kill -0 "$WPID" 2>/dev/null; then
		echo "the worker exited early; its log:"; cat "$WORK/worker.log"; exit 1
	fi
	sleep 0.2
done

say "workerctl status"
"$BIN/workerctl" status

# The embedded broker's address, for the orders tool.
KAFKA=$("$BIN/workerctl" status -o json | grep -o '"brokers": *"embedded ([^)]*)' | grep -o '127.0.0.1:[0-9]*')

say "starting the router agent (examples/router): routes orders by region"
"$BIN/router" --addr "$GRPC" 2>"$WORK/router.log" &
APID=$!

say "producing 20 sample orders to topic orders"
"$BIN/orders" produce --brokers "$KAFKA" --topic orders -n 20 | tail -n 3

say "results: orders-eu, orders-us and the dead-letter topic demo-router-dlq"
"$BIN/orders" consume --brokers "$KAFKA" --topics orders-eu,orders-us,demo-router-dlq -n 20 --timeout 30s

say "workerctl agents"
"$BIN/workerctl" agents

say "grpcurl -plaintext $GRPC list"
"$BIN/grpcurl" -plaintext "$GRPC" list

say "grpcurl -plaintext $GRPC eddy.v1.LifecycleService/GetStatus"
"$BIN/grpcurl" -plaintext "$GRPC" eddy.v1.LifecycleService/GetStatus | head -20

say "curl http://$HTTP/readyz"
curl -fsS "http://$HTTP/readyz" || true

if [[ -t 0 && -z "${DEMO_AUTO:-}" ]]; then
	say "the worker is running; press Ctrl-C to stop it"
	trap 'kill -INT "$WPID" 2>/dev/null || true' INT
	tail -f "$WORK/worker.log" --pid "$WPID" || true
else
	say "stopping the worker with SIGINT"
	kill -INT "$WPID"
fi
kill -INT "$APID" 2>/dev/null || true
set +e
wait "$WPID"
rc=$?
set -e
say "worker exited with status $rc"
tail -n 3 "$WORK/worker.log"
exit "$rc"
