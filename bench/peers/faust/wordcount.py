#!/usr/bin/env python3
"""Word count with faust-streaming: the faust peer of the Eddy benchmark.

Usage (from the venv that setup.sh creates):

    .venv/bin/python wordcount.py --bootstrap HOST:PORT --input TOPIC \
        --output TOPIC --app-id ID --state-dir DIR [--store rocksdb|memory]

Pipeline (the word-count example of faust's documentation, with raw bytes):

    INPUT (lines, 8 partitions)
      -> agent `split_lines`: split each line on b" ", send every word to the
         internal topic "<app-id>-words" keyed by the word (faust creates it,
         8 partitions; the default partitioner hashes the key, so all events
         of one word land in one partition = repartition by word)
      -> agent `count_words`: counts[word] += 1 in the table "counts"
         (8 partitions, changelog topic "<app-id>-counts-changelog"), then
         sends key=word, value=b"<count>" to OUTPUT for every increment.

stdout carries exactly one line, "READY", printed when the worker has joined
the group, got its partitions, finished table recovery and resumed fetching
(faust's own "Worker ready" point, see ReadyWorker). Everything else (faust's
logging at level warning) goes to stderr. SIGTERM stops the worker (faust's
signal handler) and the process exits.
"""

import argparse
import asyncio
import os
import sys

# The real stdout, kept for the READY line: faust/mode may redirect
# sys.stdout into the logging system once the worker runs.
_STDOUT = sys.stdout


def parse_args(argv):
    p = argparse.ArgumentParser(description="faust-streaming word count")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap HOST:PORT")
    p.add_argument("--input", required=True, help="input topic (lines)")
    p.add_argument("--output", required=True, help="output topic (word -> count)")
    p.add_argument("--app-id", required=True, help="faust app id (= consumer group id)")
    p.add_argument("--state-dir", required=True, help="faust datadir (table state)")
    p.add_argument(
        "--store",
        choices=("rocksdb", "memory"),
        default="rocksdb",
        help="table store (default rocksdb, via rocksdict)",
    )
    return p.parse_args(argv)


ARGS = parse_args(sys.argv[1:])

# uvloop must be selected before anything creates an event loop
# (mode.loop.use is what `faust worker --loop uvloop` does).
import mode.loop  # noqa: E402

mode.loop.use("uvloop")

import faust  # noqa: E402

RAW = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

app = faust.App(
    ARGS.app_id,
    broker=f"kafka://{ARGS.bootstrap}",
    datadir=ARGS.state_dir,
    store="rocksdb://" if ARGS.store == "rocksdb" else "memory://",
    # Topics that faust creates itself (repartition topic, table changelog):
    # 8 partitions, replication 1 (single broker).
    topic_partitions=8,
    topic_replication_factor=1,
    # at-least-once (faust's default), stated explicitly: no exactly-once.
    processing_guarantee="at_least_once",
    # No embedded HTTP server (it would listen on 0.0.0.0:6066 by default
    # and collide between several workers); not needed by the benchmark.
    web_enabled=False,
    # Throughput (see README.md): faust's settings doc: "Higher numbers gives
    # better throughput" (default 4096); broker_commit_every stays at its
    # default 10_000, below the buffer size, so commits stay frequent.
    stream_buffer_maxsize=16384,
)

lines_topic = app.topic(ARGS.input, **RAW)
output_topic = app.topic(ARGS.output, **RAW)
# Repartition topic keyed by word; internal=True makes faust create it with
# topic_partitions / topic_replication_factor.
words_topic = app.topic(f"{ARGS.app_id}-words", partitions=8, internal=True, **RAW)

# word (str) -> count (int); changelog "<app-id>-counts-changelog" (faust default).
counts = app.Table("counts", default=int, partitions=8)


@app.agent(lines_topic)
async def split_lines(lines):
    async for line in lines:
        for word in line.split(b" "):
            if word:
                await words_topic.send(key=word, value=word)


@app.agent(words_topic)
async def count_words(words):
    async for word in words:
        key = word.decode()
        n = counts[key] + 1
        counts[key] = n
        await output_topic.send(key=word, value=b"%d" % n)


class ReadyWorker(faust.Worker):
    """Prints READY once faust considers the worker started.

    faust calls Worker.on_startup_finished from App.on_started after
    ``tables.wait_until_recovery_completed()``: by then the consumer has
    joined the group, received its assignment, recovered the table
    partitions from the changelog, resumed the stream partitions and
    started the fetcher (this is where faust itself logs "Ready").
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # faust quirk: with a log level of WARN or above, Worker keeps a
        # terminal spinner, and on_setup_root_logger then sets the *root
        # logger to DEBUG* and adds a SpinnerHandler, so every debug call in
        # faust/aiokafka builds a LogRecord for the rest of the run (even
        # after the spinner stopped, and even when stdout is not a tty).
        # No spinner -> the root logger stays at the requested level.
        self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        if self._shutdown_immediately:
            return
        _STDOUT.write("READY\n")
        _STDOUT.flush()


async def _predeclare_internal_topics() -> None:
    """Create faust's internal topics up front and wait until they are visible.

    faust declares its internal topics (repartition topic, table changelog)
    itself right before the consumer subscribes, but a topic created that
    late can be missing from the metadata the group leader sees when it
    computes the assignment ("Ignoring missing topic" in the log); its
    partitions are then not consumed until the next metadata refresh
    (metadata.max.age.ms, 5 minutes) triggers a rebalance. So we create them
    here with exactly the configuration faust would use, and wait until the
    broker reports them with leaders; faust then finds them and skips
    creation.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    conf = app.conf
    wanted = {
        words_topic.get_topic_name(): {},
        counts.changelog_topic.get_topic_name(): {"cleanup.policy": "compact"},
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=ARGS.bootstrap)
    await admin.start()
    try:
        for name, cfg in wanted.items():
            resp = await admin.create_topics(
                [NewTopic(name, conf.topic_partitions, conf.topic_replication_factor, topic_configs=cfg)]
            )
            for err in resp.to_object()["topic_errors"]:
                if err["error_code"] not in (0, TopicAlreadyExistsError.errno):
                    raise SystemExit("creating topic %s failed: %r" % (name, err))
        for _ in range(300):
            desc = await admin.describe_topics(list(wanted))
            ok = all(
                d["error_code"] == 0
                and len(d["partitions"]) == conf.topic_partitions
                and all(p["leader"] >= 0 for p in d["partitions"])
                for d in desc
            )
            if ok:
                return
            await asyncio.sleep(0.1)
        raise SystemExit("internal topics did not become visible: %r" % (list(wanted),))
    finally:
        await admin.close()


def main() -> None:
    os.makedirs(ARGS.state_dir, exist_ok=True)
    asyncio.run(_predeclare_internal_topics())
    worker = ReadyWorker(
        app,
        loglevel="warning",
        quiet=True,
        stdout=sys.stderr,  # banner/"say" output off stdout
        stderr=sys.stderr,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
