"""End to end: Python agents as real processes, the real worker (built from
this repository) and a real Kafka broker. Inputs are produced and outputs
read with an independent Kafka client (confluent-kafka)."""

from __future__ import annotations

import asyncio
import collections
import random
import re
import signal
import time
from typing import Optional

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eddy_agent import Agent, Event, UnauthenticatedError, UnknownAgentError
from harness import (
    PASSAGENT,
    WORDCOUNT,
    Proc,
    Reader,
    Worker,
    end_offsets,
    keyed_values,
    pass_app,
    produce,
    python_agent,
    uniq,
    wait_committed_at_end,
    wait_for,
)

pytestmark = pytest.mark.timeout(150)


def all_present(topic: str, values: list[str]):
    want = set(values)
    seen: set[str] = set()
    pos = [0]

    def stop(got) -> bool:
        recs = got[topic]
        for r in recs[pos[0] :]:
            if r.value in want:
                seen.add(r.value)
        pos[0] = len(recs)
        return len(seen) == len(want)

    return stop


def check_outputs(values: list[str], outs, exact: bool) -> None:
    """Every input value in outs at least once (exactly once when exact)."""
    seen = collections.Counter(r.value for r in outs)
    missing = [v for v in values if seen[v] == 0]
    assert not missing, f"{len(missing)} of {len(values)} inputs have no output, e.g. {missing[:5]}"
    if exact:
        dup = [v for v in values if seen[v] > 1]
        assert not dup and len(outs) == len(values), f"{len(outs)} outputs, {len(dup)} duplicated inputs"


def read_to_end(bootstrap: str, topic: str, partitions: int = 8, timeout: float = 60) -> list[tuple[int, int, str, Optional[str]]]:
    """Every record of topic up to its current end offsets, as (partition,
    offset, key, value), value None for a tombstone; in offset order per
    partition. Offsets may have gaps (a compacted topic)."""
    end = end_offsets(bootstrap, topic, partitions)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uniq("verify"), "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        nxt = [0] * partitions
        out: list[tuple[int, int, str, Optional[str]]] = []
        deadline = time.monotonic() + timeout
        while any(n < e for n, e in zip(nxt, end)):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic}: timed out at offsets {nxt} of {end}")
            for m in c.consume(num_messages=1000, timeout=0.1):
                if m.error() is not None:
                    continue
                v = m.value()
                out.append((m.partition(), m.offset(), (m.key() or b"").decode(), None if v is None else v.decode()))
                nxt[m.partition()] = m.offset() + 1
        return out
    finally:
        c.close()


def test_wordcount_exact_on_clean_run(kafka: str, bins, procs) -> None:
    """examples/wordcount/python, both agents, against a real worker: once
    the input is committed to its end, every word's last count on the output
    topic, and the fold of the table's changelog, are the true counts."""
    app, lines, words, out = uniq("wc"), uniq("lines"), uniq("words"), uniq("counts-out")
    changelog = f"{app}-counts-changelog"
    body = f"""app: {app}
brokers: {kafka}
kafka: {{reach_timeout: 10s, session_timeout: 6s}}
topics:
  - {{name: {lines}, partitions: 8}}
  - {{name: {words}, partitions: 8}}
  - {{name: {out}, partitions: 8}}
agents:
  - {{name: split, topics: [{lines}]}}
  - {{name: count, topics: [{words}], tables: [counts]}}
tables:
  - {{name: counts}}
"""
    w = procs.add(Worker(bins, body).start())
    w.wait_assigned(16)
    env = {"EDDY_ADDR": w.grpc_addr, "EDDY_APP": w.app, "WORDCOUNT_WORDS_TOPIC": words, "WORDCOUNT_OUT_TOPIC": out}
    procs.add(python_agent(WORDCOUNT, env=env))
    w.wait_instances("split", 1, 8)
    w.wait_instances("count", 1, 8)

    rnd = random.Random(6)
    vocab = ["the", "cat", "sat", "on", "mat", "Hat", "a", "dog's", "été", "x1"]
    texts = []
    for i in range(3000):
        texts.append(" ".join(rnd.choice(vocab) for _ in range(rnd.randint(0, 6))) + rnd.choice(["", ".", "!"]))
    texts.append("")  # no words: OK, nothing emitted
    keys = [f"l{i}" for i in range(len(texts) + 1)]
    want = collections.Counter(word for t in texts for word in re.findall(r"\w+", t.lower()))
    total = sum(want.values())
    produce(kafka, lines, keys, [*texts, b"\xff not UTF-8"])
    dlq = f"{app}-split-dlq"

    r = Reader(kafka, words, dlq)
    try:
        got = r.read_until(60, f"{total} words and a dead letter", lambda g: len(g[words]) >= total and len(g[dlq]) >= 1)
        wait_committed_at_end(kafka, app, lines)
        # Everything is committed, so every word is in Kafka: the topic
        # holds exactly the expected records, no more.
        assert sum(end_offsets(kafka, words, 8)) == total
        # ...and count drains words: its outputs and changelog records are
        # acknowledged before its offsets are committed.
        wait_committed_at_end(kafka, app, words)
    finally:
        r.close()

    # split: one (word, 1) per word, keyed by the word.
    recs = got[words]
    assert len(recs) == total
    assert got[dlq][0].headers["eddy.error"].startswith("line is not UTF-8: UnicodeDecodeError: ")
    assert {rec.value for rec in recs} == {"1"}
    assert collections.Counter(rec.key for rec in recs) == want
    # Keyed by the word: every occurrence of a word is on one partition.
    parts = collections.defaultdict(set)
    for rec in recs:
        parts[rec.key].add(rec.partition)
    assert all(len(p) == 1 for p in parts.values())

    # count: word -> count on the output topic. A word's records are on one
    # partition, in offset order: the last one is the word's final count.
    counts = read_to_end(kafka, out)
    last: dict[str, str] = {}
    seq = collections.defaultdict(list)
    for part, _, word, value in sorted(counts):
        assert value is not None
        assert part == next(iter(parts[word])), f"{word}: count on partition {part}, words on {parts[word]}"
        last[word] = value
        seq[word].append(int(value))
    assert {word: int(v) for word, v in last.items()} == dict(want)
    # A clean run processes every word once: counts go 1, 2, ... n.
    bad = {word: s for word, s in seq.items() if s != list(range(1, want[word] + 1))}
    assert not bad, f"counts not 1..n for {sorted(bad)[:5]}"
    assert len(counts) == total
    assert not [x for x in w.agents() if x.name == "count" and x.unassigned]

    # The table's changelog folds to the same counts (no tombstones: count
    # never deletes).
    fold: dict[str, str] = {}
    for _, _, word, value in sorted(read_to_end(kafka, changelog)):
        assert value is not None, f"tombstone for {word} in {changelog}"
        fold[word] = value
    assert {word: int(v) for word, v in fold.items()} == dict(want)


def test_agent_killed_mid_stream_loses_nothing(kafka: str, bins, procs) -> None:
    body, app, tin, tout = pass_app(kafka)
    w = procs.add(Worker(bins, body).start())
    w.wait_assigned(8)
    first = procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--delay", "0.001"))
    info = w.wait_instances("pass", 1, 8)
    first_id = info.instances[0].instance_id
    keys, values = keyed_values(12000, 300)
    produce(kafka, tin, keys, values)
    r = Reader(kafka, tout)
    try:
        r.read_until(60, "the first outputs", lambda g: len(g[tout]) >= 1500)
        first.kill()  # SIGKILL: no goodbye, results in flight are lost
        at_kill = len(r.got[tout])
        assert at_kill < len(values), "the agent finished before it was killed; the test proves nothing"
        # The worker notices, pauses the partitions, and gives them to the
        # restarted agent, which gets every event without a result again.
        procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout))
        info = w.wait_instances("pass", 1, 8)
        assert info.instances[0].instance_id != first_id
        got = r.read_until(90, "every input in the output", all_present(tout, values))
    finally:
        r.close()
    check_outputs(values, got[tout], exact=False)
    wait_committed_at_end(kafka, app, tin)


def test_handler_exception_retried_then_dead_lettered(kafka: str, bins, procs) -> None:
    body, app, tin, tout = pass_app(kafka, ", max_retries: 2")
    w = procs.add(Worker(bins, body).start())
    w.wait_assigned(8)
    agent = procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--poison", "POISON"))
    w.wait_instances("pass", 1, 8)
    keys, values = keyed_values(400, 40)
    keys.insert(200, "poison-key")
    values.insert(200, "POISON")
    pos = produce(kafka, tin, keys, values)
    poison_partition, poison_offset = pos[200]
    dlq = f"{app}-pass-dlq"
    r = Reader(kafka, dlq, tout)
    good = [v for v in values if v != "POISON"]
    outputs_done = all_present(tout, good)
    try:
        got = r.read_until(60, "the dead letter and every other output", lambda g: outputs_done(g) and len(g[dlq]) >= 1)
    finally:
        r.close()
    d = got[dlq][0]
    assert d.value == "POISON"
    assert d.headers["eddy.agent"] == "pass"
    assert d.headers["eddy.topic"] == tin
    assert (d.headers["eddy.partition"], d.headers["eddy.offset"]) == (str(poison_partition), str(poison_offset))
    assert d.headers["eddy.attempts"] == "3", d.headers  # first delivery + 2 retries
    assert f"ValueError: poison event at offset {poison_offset}" in d.headers["eddy.error"], d.headers
    check_outputs(good, got[tout], exact=False)
    assert all(o.value != "POISON" for o in got[tout])
    wait_committed_at_end(kafka, app, tin)
    assert agent.alive(), "an exception in the handler must never crash the agent"
    assert agent.output.count("ValueError: poison event") >= 3  # logged with its traceback


def test_bad_token_and_unknown_agent_raise(kafka: str, bins, procs) -> None:
    body, _, _, tout = pass_app(kafka)
    w = procs.add(Worker(bins, body, env={"EDDY_TOKEN": "right-token"}).start())
    w.wait_assigned(8)

    async def handler(ev: Event) -> None:
        pass

    async def run(name: str, token: str) -> None:
        a = Agent(name, handler, app=w.app, addr=w.grpc_addr, token=token)
        await asyncio.wait_for(a.run(), 20)

    with pytest.raises(UnauthenticatedError) as e:
        asyncio.run(run("pass", "wrong-token"))
    assert f"worker at {w.grpc_addr} rejected agent 'pass': the worker rejected the token" in str(e.value)
    with pytest.raises(UnauthenticatedError):
        asyncio.run(run("pass", ""))
    with pytest.raises(UnknownAgentError) as e:
        asyncio.run(run("routr", "right-token"))
    assert f"worker at {w.grpc_addr} rejected agent 'routr': the worker does not know this agent" in str(e.value)
    assert "routr" in e.value.message

    # As a program (App.main): a clear message and status 1, no traceback.
    bad = procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--token", "wrong-token"))
    assert bad.wait(20) == 1
    assert "passagent.py: worker at" in bad.output and "the worker rejected the token" in bad.output
    assert "Traceback" not in bad.output
    # The right token works.
    procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--token", "right-token"))
    w.wait_instances("pass", 1, 8)


def test_go_and_python_instances_share_partitions(kafka: str, bins, procs) -> None:
    body, app, tin, tout = pass_app(kafka)
    w = procs.add(Worker(bins, body).start())
    w.wait_assigned(8)
    procs.add(
        Proc("go-testagent", [bins["testagent"], "--addr", w.grpc_addr, "--app", w.app, "--name", "pass", "--out", tout, "--instance", "go-1"])
    )
    procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--instance", "py-1"))
    info = w.wait_instances("pass", 2, 8)
    owned = {i.instance_id: {p.partition for p in i.partitions} for i in info.instances}
    assert set(owned) == {"go-1", "py-1"}
    assert owned["go-1"] and owned["py-1"], f"both instances own partitions: {owned}"
    assert not owned["go-1"] & owned["py-1"], "a partition goes to exactly one instance"

    keys, values = keyed_values(4000, 400)
    produce(kafka, tin, keys, values)
    r = Reader(kafka, tout)
    try:
        got = r.read_until(60, "every input in the output", all_present(tout, values))
    finally:
        r.close()
    check_outputs(values, got[tout], exact=True)
    by_sdk = collections.Counter(rec.headers.get("agent.sdk", "go") for rec in got[tout])
    assert by_sdk["python"] > 0 and by_sdk["go"] > 0, by_sdk
    for rec in got[tout]:  # each output came from the owner of its source partition
        src = int(rec.headers["src.partition"])
        owner = "py-1" if rec.headers.get("agent.sdk") == "python" else "go-1"
        assert src in owned[owner]
    wait_committed_at_end(kafka, app, tin)


def test_sigterm_graceful_stop(kafka: str, bins, procs) -> None:
    body, app, tin, tout = pass_app(kafka)
    w = procs.add(Worker(bins, body).start())
    w.wait_assigned(8)
    a = procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--delay", "0.002"))
    w.wait_instances("pass", 1, 8)
    keys, values = keyed_values(3000, 100)
    produce(kafka, tin, keys, values)
    r = Reader(kafka, tout)
    try:
        r.read_until(60, "the first outputs", lambda g: len(g[tout]) >= 200)
        t0 = time.monotonic()
        a.signal(signal.SIGTERM)
        assert a.wait(20) == 0
        assert time.monotonic() - t0 < 12
        assert "stopping gracefully" in a.output and "stopped" in a.output
        # The worker has no instance left; nothing was lost: a new one finishes.
        wait_for(20, "no instance of pass", lambda: not [x for x in w.agents() if x.name == "pass" and x.instances])
        procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout))
        got = r.read_until(60, "every input in the output", all_present(tout, values))
    finally:
        r.close()
    check_outputs(values, got[tout], exact=False)
    wait_committed_at_end(kafka, app, tin)


WINDOW_AGENT = '''
import os
from eddy_agent import App

app = App()
OUT = os.environ["WINDOW_OUT_TOPIC"]


@app.agent("wcount")
async def wcount(event):
    """Counts events per key and minute; emits key@window-start-ms -> count."""
    for w in event.windows("perminute"):
        n = int(w.value) + 1 if w.value is not None else 1
        event.set_window_state("perminute", w.start, str(n))
        event.emit(OUT, key=f"{event.key.decode()}@{int(w.start.timestamp() * 1000)}", value=str(n))


if __name__ == "__main__":
    app.main()
'''


def test_windowed_counts(kafka: str, bins, procs, tmp_path) -> None:
    """A Python agent counts per key and tumbling minute on event time (the
    records' timestamps, over three minutes in the past): the last emitted
    count of every (key, minute) is the true one, and the worker's
    TableService.Get with the window start agrees."""
    from confluent_kafka import Producer

    app, topic, out = uniq("win"), uniq("events"), uniq("win-out")
    body = f"""app: {app}
brokers: {kafka}
kafka: {{reach_timeout: 10s, session_timeout: 6s}}
topics:
  - {{name: {topic}, partitions: 8}}
  - {{name: {out}, partitions: 8}}
agents:
  - {{name: wcount, topics: [{topic}], tables: [perminute]}}
tables:
  - {{name: perminute, window: {{type: tumbling, size: 1m, expires: 1h}}}}
"""
    w = procs.add(Worker(bins, body).start())
    w.wait_assigned(8)
    script = tmp_path / "window_agent.py"
    script.write_text(WINDOW_AGENT)
    procs.add(python_agent(script, env={"EDDY_ADDR": w.grpc_addr, "EDDY_APP": w.app, "WINDOW_OUT_TOPIC": out}))
    w.wait_instances("wcount", 1, 8)

    base_ms = (int(time.time()) // 60 - 10) * 60 * 1000
    want: collections.Counter[str] = collections.Counter()
    p = Producer({"bootstrap.servers": kafka, "acks": "all", "partitioner": "murmur2_random"})
    for i in range(600):
        key, ts = f"k{i % 10}", base_ms + (i % 180) * 1000
        want[f"{key}@{ts // 60000 * 60000}"] += 1
        p.produce(topic, key=key, value=b"x", timestamp=ts)
    assert p.flush(30) == 0
    wait_committed_at_end(kafka, app, topic)

    last: dict[str, int] = {}
    for _, _, k, v in sorted(read_to_end(kafka, out)):
        last[k] = int(v)
    assert last == dict(want)
    assert len(want) == 30

    import grpc
    from eddy_agent._gen.eddy.v1 import table_pb2, table_pb2_grpc

    with grpc.insecure_channel(w.grpc_addr) as ch:
        tables = table_pb2_grpc.TableServiceStub(ch)
        for k, n in want.items():
            key, ms = k.split("@")
            req = table_pb2.GetRequest(table="perminute", key=key.encode())
            req.window_start.FromMilliseconds(int(ms))
            assert tables.Get(req, timeout=10).value == str(n).encode(), k


def test_agents_reach_every_worker(kafka: str, bins, procs) -> None:
    """Two Python agent processes, each given one worker's address, serve
    every partition of three workers; after one worker is killed -9 they
    serve the two left (docs/agents.md, "Several workers")."""
    body, app, tin, tout = pass_app(kafka)
    ws = [procs.add(Worker(bins, body).start()) for _ in range(3)]
    agents = [
        procs.add(python_agent(PASSAGENT, "--addr", ws[i].grpc_addr, "--app", ws[0].app, "--out", tout, "--instance", f"py-{i}", "--discovery", "0.3"))
        for i in (0, 2)
    ]

    def all_served(workers: list[Worker]) -> bool:
        owned_total = 0
        for w in workers:
            st = w.status()
            owned = sum(1 for tp in st.get("assigned") or [] if tp.get("topic") == tin)
            infos = [a for a in w.agents() if a.name == "pass"]
            if not infos or owned == 0:
                return False
            info = infos[0]
            served = sum(len(i.partitions) for i in info.instances)
            if len(info.instances) != 2 or info.unassigned or served != owned:
                return False
            owned_total += owned
        return owned_total == 8

    wait_for(90, "every partition of the three workers served by both agents", lambda: all_served(ws), interval=0.2)
    keys, values = keyed_values(2000, 400)
    produce(kafka, tin, keys, values)
    r = Reader(kafka, tout)
    try:
        got = r.read_until(60, "every input in the output", all_present(tout, values))
    finally:
        r.close()
    check_outputs(values, got[tout], exact=False)
    assert {rec.headers["src.partition"] for rec in got[tout]} == {str(p) for p in range(8)}

    victim = ws[1]
    assert victim.proc is not None
    victim.proc.kill()
    left = [ws[0], ws[2]]
    wait_for(90, "every partition of the two workers left served by both agents", lambda: all_served(left), interval=0.2)
    for a in agents:
        wait_for(30, "the agent to leave the dead worker", lambda: f"leaving the worker at {victim.grpc_addr}" in a.output)
    keys2, values2 = keyed_values(2000, 400)
    values2 = ["after:" + v for v in values2]
    r = Reader(kafka, tout)
    try:
        produce(kafka, tin, keys2, values2)
        got = r.read_until(60, "every input after the kill in the output", all_present(tout, values2))
    finally:
        r.close()
    check_outputs(values2, [rec for rec in got[tout] if rec.value.startswith("after:")], exact=False)
