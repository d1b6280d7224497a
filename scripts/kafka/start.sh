#!/usr/bin/env bash
# start.sh — start a throw-away single-node Apache Kafka broker for tests.
#
# Usage: scripts/kafka/start.sh DIR
#
# Runs one JVM in KRaft combined mode (broker + controller, node.id=1) that
# listens on 127.0.0.1 only, with all state in DIR:
#   DIR/server.properties   broker configuration (generated)
#   DIR/log4j2.properties   logging configuration (generated)
#   DIR/data/               log.dirs (topic data and the KRaft metadata log)
#   DIR/broker.log          the broker's stdout/stderr
#   DIR/broker.pid          PID of the broker JVM (used by stop.sh)
#   DIR/bootstrap           bootstrap address, "127.0.0.1:PORT"
# On success prints the bootstrap address on stdout and exits 0; otherwise
# prints the tail of broker.log on stderr and exits non-zero (the broker, if
# it was started, is stopped again).
#
# Environment:
#   EDDY_KAFKA_CACHE          jar cache (see fetch.sh)
#   EDDY_KAFKA_START_TIMEOUT  seconds to wait for the broker (default 90)
#   EDDY_KAFKA_HEAP           JVM heap options (default "-Xms128m -Xmx512m")
#   EDDY_KAFKA_JVM_OPTS       GC/JIT options, replacing the default
#                             "-XX:+UseParallelGC -XX:TieredStopAtLevel=1"
#   EDDY_KAFKA_CDS            0 disables the AppCDS class archive (see below)
#   EDDY_KAFKA_WATCH_PID      if set, a small watchdog stops the broker and
#                             deletes DIR once that process has exited (so a
#                             killed `go test` binary doesn't leak a broker)
#   EDDY_KAFKA_KEEP           1: start again the broker DIR held before (a
#                             restart after a stop or a kill -9): same ports,
#                             same data, nothing formatted
#   EDDY_KAFKA_SASL_SSL       1: also listen for SASL_SSL on another loopback
#                             port (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; a
#                             client certificate required), beside the
#                             unchanged PLAINTEXT listener. Made at start
#                             with openssl, in DIR/tls/: ca.pem (the CA
#                             that signs the broker's and the client's
#                             certificates), client.pem and client.key (a
#                             client certificate), broker.pem (the broker's
#                             key and certificate). DIR/sasl_ssl.bootstrap
#                             holds "127.0.0.1:PORT" of the SASL_SSL
#                             listener, DIR/sasl.username and
#                             DIR/sasl.password the one user's name and
#                             (random) password, valid for all three
#                             mechanisms.
#
# If DIR already holds a live broker, its address is printed and nothing is
# started. Stop with scripts/kafka/stop.sh DIR.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
timeout="${EDDY_KAFKA_START_TIMEOUT:-90}"
heap="${EDDY_KAFKA_HEAP:--Xms128m -Xmx512m}"
# On a 2-core machine most of the startup time is class loading and JIT work:
# C1 only (TieredStopAtLevel=1) and the Parallel collector start faster than
# the default C2 + G1, and a test broker never needs peak throughput.
jvm_opts="${EDDY_KAFKA_JVM_OPTS:--XX:+UseParallelGC -XX:TieredStopAtLevel=1}"

log="$dir/broker.log"
pidfile="$dir/broker.pid"
props="$dir/server.properties"
log4j="$dir/log4j2.properties"

die() {
  echo "start.sh: $*" >&2
  exit 1
}

# Already running in this DIR? Then just report it (idempotent).
if [[ -f "$pidfile" && -f "$dir/bootstrap" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  cat "$dir/bootstrap"
  exit 0
fi

# Fetch the jars if needed (fast no-op when cached). fetch.sh explains what
# to install when java or mvn is missing.
cache="$("$here/fetch.sh")"
lib="$cache/lib"
command -v java >/dev/null 2>&1 || die "java not found: install a Java 17+ runtime (e.g. apt-get install -y openjdk-17-jre-headless)"
command -v python3 >/dev/null 2>&1 || die "python3 not found (used to pick free ports): install python3"
sasl_ssl="${EDDY_KAFKA_SASL_SSL:-0}"
case $sasl_ssl in
0 | 1) ;;
*) die "EDDY_KAFKA_SASL_SSL=$sasl_ssl: want 0 or 1" ;;
esac
if [[ $sasl_ssl == 1 ]]; then
  command -v openssl >/dev/null 2>&1 || die "EDDY_KAFKA_SASL_SSL=1 needs openssl (to make the test certificates): apt-get install -y openssl"
fi

# JVM options shared by the storage tool and the broker.
jvm_common=(
  -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$log4j"
  -Dkafka.logs.dir="$dir"
)

# AppCDS: the broker loads thousands of classes from ~45 jars. The first
# broker started with a given cache records them into a dynamic CDS archive
# when it exits normally (after stop.sh's SIGTERM); later brokers map that
# archive and start ~1-1.5 s faster. The archive is written to a temporary
# name and published by stop.sh via DIR/cds.pending, so a broker that was
# SIGKILLed mid-dump never publishes a partial file. A stale or mismatched
# archive (e.g. after a JDK upgrade) is ignored by the JVM (-Xshare:auto);
# delete it to regenerate.
jsa="$cache/kafka-broker.jsa"
cds=()
rm -f "$dir/cds.pending"
if [[ "${EDDY_KAFKA_CDS:-1}" != 0 ]]; then
  if [[ -s "$jsa" ]]; then
    cds=(-XX:SharedArchiveFile="$jsa")
  else
    jsa_tmp="$jsa.tmp.$$"
    cds=(-XX:ArchiveClassesAtExit="$jsa_tmp" -Xlog:cds=off -Xlog:cds+dynamic=off)
    printf '%s\n%s\n' "$jsa_tmp" "$jsa" >"$dir/cds.pending"
  fi
fi

# Logging: INFO to stdout (-> broker.log); start.sh waits for the INFO line
# "Kafka Server started". The per-request loggers are kept quiet.
cat >"$log4j" <<'LOG4J'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
LOG4J

# free_ports: print three distinct currently-free loopback TCP ports. All
# are bound at the same time so they differ; the tiny window between closing
# them here and the broker binding them is covered by the retry loop below.
free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# A KRaft cluster id is a base64url (unpadded) random 16-byte UUID; making it
# here saves a JVM start of `kafka-storage random-uuid`. Like Kafka's own
# Uuid.randomUuid(), reject ids starting with "-": the storage tool's
# argument parser would take such an id for an option.
cluster_id() {
  python3 - <<'PY'
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
PY
}

# make_tls: a CA, the broker's certificate (for 127.0.0.1 and localhost)
# and a client certificate in DIR/tls/, and the SASL user's password. Keys
# are unencrypted PKCS#8 PEM, which Kafka's PEM key store reads as is.
make_tls() {
  local t="$dir/tls"
  rm -rf "$t"
  mkdir -p "$t"
  (
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=eddy test broker CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile broker.ext -out broker.crt
    cat broker.key broker.crt >broker.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=eddy test client" -keyout client.key -out client.csr
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out client.pem
    rm -f ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key broker.pem
  ) >>"$log" 2>&1 || die "EDDY_KAFKA_SASL_SSL=1: making the test certificates with openssl failed (see $log)"
  echo eddy >"$dir/sasl.username"
  python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/sasl.password"
  chmod 600 "$dir/sasl.password"
}

write_props() { # port cport sport
  local listeners="PLAINTEXT://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2"
  local advertised="PLAINTEXT://127.0.0.1:$1"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ $sasl_ssl == 1 ]]; then
    listeners+=",SASL_SSL://127.0.0.1:$3"
    advertised+=",SASL_SSL://127.0.0.1:$3"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$props" <<PROPS
# Generated by scripts/kafka/start.sh — single-node KRaft broker for tests.
process.roles=broker,controller
node.id=1
# Static single-voter quorum (works with a plain 'format --cluster-id').
controller.quorum.voters=1@127.0.0.1:$2
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# Single node: every internal topic has one replica and needs one in-sync.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1

# Tests create their own topics explicitly.
num.partitions=1
auto.create.topics.enable=false
delete.topic.enable=true

# Fast on a small machine: no initial rebalance delay, few partitions for
# the internal topics (defaults are 50 for offsets, 50 for transactions),
# few threads.
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608

# Throw-away data: no periodic work worth doing.
log.retention.check.interval.ms=300000
PROPS
  if [[ $sasl_ssl == 1 ]]; then
    local user pass
    user="$(cat "$dir/sasl.username")"
    pass="$(cat "$dir/sasl.password")"
    cat >>"$props" <<PROPS

# EDDY_KAFKA_SASL_SSL=1: a SASL_SSL listener for clients (the PLAINTEXT one
# stays for tests' own clients and between broker and controller). One
# user, valid for PLAIN (from the JAAS line) and SCRAM (credentials stored
# in the metadata log by 'format --add-scram'). No authorizer: an
# authenticated client may do anything.
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$pass";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/broker.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.sasl_ssl.ssl.client.auth=required
PROPS
  fi
}

# tail_log: the end of broker.log, for error messages.
tail_log() {
  echo "---- last 40 lines of $log ----" >&2
  tail -n 40 "$log" >&2 2>/dev/null || true
  echo "---- end of $log ----" >&2
}

keep="${EDDY_KAFKA_KEEP:-0}"
if [[ $keep == 1 && ! -f "$props" ]]; then
  die "EDDY_KAFKA_KEEP=1: $props does not exist: no broker to start again in $dir"
fi
rm -f "$dir/bootstrap" "$pidfile"
attempts=3
for ((attempt = 1; attempt <= attempts; attempt++)); do
  if [[ $keep == 1 ]]; then
    # The same listeners as before, so clients reconnect to the address
    # they know; the data and the KRaft metadata stay.
    port="$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$props")"
    attempts=$attempt
    echo "--- restarted by start.sh (EDDY_KAFKA_KEEP=1) ---" >>"$log"
  else
    read -r port cport sport < <(free_ports)
    : >"$log"
    if [[ $sasl_ssl == 1 ]]; then make_tls; fi
    write_props "$port" "$cport" "$sport"
  fi

  # Format KRaft storage from scratch (DIR is throw-away). In Kafka 4.x the
  # storage tool is still kafka.tools.StorageTool (in kafka_2.13); it needs
  # an explicit cluster id. C1 only: it's a short-lived JVM.
  if [[ $keep != 1 ]]; then rm -rf "$dir/data"; fi
  scram=()
  if [[ $sasl_ssl == 1 ]]; then
    for m in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$m=[name=$(cat "$dir/sasl.username"),password=$(cat "$dir/sasl.password")]")
    done
  fi
  if [[ $keep != 1 ]] && ! java -Xmx256m -XX:TieredStopAtLevel=1 "${jvm_common[@]}" -cp "$lib/*" \
    kafka.tools.StorageTool format --cluster-id "$(cluster_id)" --config "$props" \
    ${scram[@]+"${scram[@]}"} >>"$log" 2>&1; then
    tail_log
    die "formatting KRaft storage failed"
  fi

  logstart="$(stat -c %s "$log")" # a restart appends: look only at what follows

  # Start the broker detached from our stdout/stderr (so a caller reading
  # our output sees EOF when we exit) and from stdin.
  # shellcheck disable=SC2086 # $heap and $jvm_opts are word lists
  java $heap $jvm_opts -XX:+ExitOnOutOfMemoryError \
    "${jvm_common[@]}" ${cds[@]+"${cds[@]}"} \
    -cp "$lib/*" kafka.Kafka "$props" </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"

  # Wait (bounded) for "Kafka Server started" — logged once the broker has
  # registered with the controller and been unfenced — plus a successful TCP
  # connect to the PLAINTEXT listener.
  ready=false
  retry=false
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      # Died during startup. A port grabbed by someone else in between
      # free_ports and bind is worth another try with new ports.
      if grep -q 'Address already in use' "$log" && ((attempt < attempts)); then
        retry=true
      fi
      break
    fi
    if tail -c +"$((logstart + 1))" "$log" | grep -q 'Kafka Server started' &&
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      ready=true
      break
    fi
    sleep 0.2
  done

  if $ready; then
    break
  fi
  if $retry; then
    echo "start.sh: port clash on attempt $attempt, retrying with new ports" >&2
    rm -f "$pidfile"
    continue
  fi
  # Timed out or died: report and clean up.
  if kill -0 "$pid" 2>/dev/null; then
    tail_log
    "$here/stop.sh" "$dir" || true
    die "broker did not come up within ${timeout}s (see $log)"
  fi
  tail_log
  rm -f "$pidfile"
  die "broker exited during startup (see $log)"
done

echo "127.0.0.1:$port" >"$dir/bootstrap"
if grep -q '^listeners=.*SASL_SSL://' "$props"; then
  sed -n 's|^listeners=.*SASL_SSL://\(127.0.0.1:[0-9]*\).*|\1|p' "$props" >"$dir/sasl_ssl.bootstrap"
fi

# Optional watchdog: when the process EDDY_KAFKA_WATCH_PID exits while the
# broker still runs, stop the broker and delete DIR. It exits by itself once
# the broker is gone (e.g. after a normal stop.sh).
if [[ -n "${EDDY_KAFKA_WATCH_PID:-}" ]]; then
  watch="$EDDY_KAFKA_WATCH_PID"
  (
    while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      "$here/stop.sh" "$dir" || true
      rm -rf "$dir"
    fi
  ) </dev/null >/dev/null 2>&1 &
fi

cat "$dir/bootstrap"
