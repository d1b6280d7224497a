"""Unit tests of the agent protocol against an in-process fake worker."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import signal
import sys
import time

import grpc
import pytest

import eddy_agent
from eddy_agent import (
    Agent,
    App,
    DeadLetter,
    Event,
    Mutation,
    NotSupportedError,
    ProtocolVersionError,
    ProtocolViolationError,
    RejectedError,
    Retry,
    UnauthenticatedError,
    UnknownAgentError,
    WrongAppError,
    Window,
)
from eddy_agent._gen.eddy.v1 import agent_pb2 as pb
from fakeworker import FakeSession, FakeWorker, event, header

pytestmark = pytest.mark.timeout(30)

T = "in"  # the topic of the tests


async def ok(ev: Event) -> None:
    ev.emit("out", key=ev.key, value=ev.value)


async def assigned(s: FakeSession, *partitions: int, epoch: int = 1) -> None:
    """Assign partitions and wait for their AssignAcks."""
    for p in partitions:
        s.assign(T, p, epoch)
    for p in partitions:
        ack = await s.expect("assign_ack")
        assert (ack.topic, ack.partition, ack.epoch) == (T, p, epoch)


async def until(cond, timeout: float = 5) -> None:
    """Wait until cond() is true."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def kinds(msgs: list[pb.ConnectRequest]) -> list[str]:
    return [str(m.WhichOneof("msg")) for m in msgs]


# ---- Hello ------------------------------------------------------------------


async def test_hello_contents(fw: FakeWorker, run) -> None:
    a, _ = run.start(ok, name="count", token="s3cret", app="shop")
    s = await fw.session()
    h = s.hello
    assert h.agent == "count"
    assert h.app == "shop" == a.app
    assert h.protocol_version == 1 == eddy_agent.PROTOCOL_VERSION
    assert (h.credit.events, h.credit.bytes) == (1000, 8 << 20)
    assert h.token == "s3cret"
    assert s.metadata.get("authorization") == "Bearer s3cret"
    # <hostname>-<pid>-<random>, chosen once per process.
    assert re.fullmatch(rf"[!-~]+-{os.getpid()}-[0-9a-f]{{6}}", h.instance_id), h.instance_id
    assert a.instance_id == h.instance_id
    assert Agent("other", ok, app="shop").instance_id == a.instance_id  # chosen once per process
    # Connected once welcomed, with the worker's session id.
    await until(lambda: a.connected)
    assert a.connected and a.session_id == s.id


async def test_hello_defaults_from_environment(fw: FakeWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDDY_ADDR", fw.addr)
    monkeypatch.setenv("EDDY_TOKEN", "from-env")
    monkeypatch.setenv("EDDY_APP", "shop-env")
    a = Agent("pass", ok, instance_id="pod-7", credit_events=10, credit_bytes=1234)
    t = asyncio.ensure_future(a.run())
    try:
        s = await fw.session()
        assert a.addr == fw.addr
        assert s.hello.token == "from-env" and s.metadata["authorization"] == "Bearer from-env"
        assert s.hello.instance_id == "pod-7"
        assert s.hello.app == "shop-env"
        assert (s.hello.credit.events, s.hello.credit.bytes) == (10, 1234)
    finally:
        a.stop()
        await asyncio.wait_for(t, 10)


async def test_no_token_no_authorization(fw: FakeWorker, run) -> None:
    run.start(ok)
    s = await fw.session()
    assert s.hello.token == ""
    assert "authorization" not in s.metadata


def test_options_are_checked_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDDY_APP", raising=False)
    with pytest.raises(ValueError) as e:
        Agent(
            "",
            None,  # type: ignore[arg-type]
            addr="http://host:1",
            token="two words",
            instance_id="",
            credit_events=0,
            credit_bytes=-1,
            concurrency=-1,
            drain_timeout=-1,
            backoff_min=2,
            backoff_max=1,
        )
    msg = str(e.value)
    for want in (
        "name: empty",
        "handler: not callable",
        "app: empty: pass app=... (the app file's app) or set $EDDY_APP",
        "without a scheme",
        "token: contains whitespace",
        "instance_id: empty",
        "credit_events: 0",
        "credit_bytes: -1",
        "concurrency: -1",
        "drain_timeout: -1",
        "minimum 2s exceeds maximum 1s",
    ):
        assert want in msg, msg
    with pytest.raises(ValueError, match="missing port"):
        Agent("a", ok, app="app", addr="localhost")


# ---- outcomes, records and state ---------------------------------------------


async def test_outcomes(fw: FakeWorker, run) -> None:
    async def handler(ev: Event) -> None:
        ev.emit("dropped-unless-ok", value=b"x")
        v = ev.value
        if v == b"ok":
            ev.emit("out", key=ev.key, value=b"copy", headers={"h1": "a", "h2": b"b"})
            ev.emit("out2", value="text", timestamp=datetime.datetime(2020, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc))
        elif v == b"retry":
            raise Retry("not now")
        elif v == b"dead":
            try:
                int("x")
            except ValueError as e:
                raise DeadLetter("bad input") from e
        elif v == b"boom":
            raise ValueError("boom")
        elif v == b"keyerror":
            {}["missing"]
        elif v == b"emptytopic":
            ev.emit("", value=b"x")

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0, epoch=7)
    values = [b"ok", b"retry", b"dead", b"boom", b"keyerror", b"emptytopic"]
    s.batch(T, 0, 7, [event(i, v) for i, v in enumerate(values)])
    res = await s.expect("results")
    assert (res.topic, res.partition, res.epoch) == (T, 0, 7)
    assert [r.offset for r in res.results] == list(range(len(values)))
    st = [pb.ResultStatus.Name(r.status) for r in res.results]
    assert st == [
        "RESULT_STATUS_OK",
        "RESULT_STATUS_RETRY",
        "RESULT_STATUS_DEAD_LETTER",
        "RESULT_STATUS_RETRY",
        "RESULT_STATUS_RETRY",
        "RESULT_STATUS_RETRY",
    ]
    errs = [r.error for r in res.results]
    assert errs[0] == ""
    assert errs[1] == "not now"
    assert errs[2] == "bad input: ValueError: invalid literal for int() with base 10: 'x'"
    assert errs[3] == "ValueError: boom"
    assert errs[4] == "KeyError: 'missing'"
    assert errs[5] == "ValueError: emit: empty topic"
    okr = res.results[0]
    assert [(p.topic, p.key, p.value) for p in okr.produced] == [
        ("dropped-unless-ok", b"", b"x"),
        ("out", b"k", b"copy"),
        ("out2", b"", b"text"),
    ]
    assert [(h.key, h.value) for h in okr.produced[1].headers] == [("h1", b"a"), ("h2", b"b")]
    assert not okr.produced[1].HasField("timestamp"), "without one the worker gives the input's"
    assert okr.produced[2].timestamp.seconds == 1588748889
    for r in res.results[1:]:
        assert not r.produced and not r.mutations, "records of a failed event must be dropped"
    credit = await s.expect("credit")
    assert credit.events == len(values)


async def test_event_fields_and_state_mapping(fw: FakeWorker, run) -> None:
    seen: list[Event] = []

    async def handler(ev: Event) -> None:
        seen.append(ev)
        n = int(ev.state("counts") or b"0")
        ev.set_state("counts", str(n + 1))
        assert ev.state("counts") == str(n + 1).encode()
        assert ev.state("empty") == b""  # present, empty value
        assert ev.state("absent") is None
        ev.delete_state("other")
        assert ev.state("other") is None

    run.start(handler)
    s = await fw.session()
    await assigned(s, 3)
    e = event(
        41,
        value=b"v",
        key=b"word",
        attempt=2,
        headers=[header("a", b"1"), header("a", b"2")],
        state=[
            pb.TableState(table="counts", has_value=True, value=b"41"),
            pb.TableState(table="empty", has_value=True, value=b""),
            pb.TableState(table="absent", has_value=False),
            pb.TableState(table="other", has_value=True, value=b"x"),
        ],
    )
    e.timestamp.FromSeconds(1_700_000_000)
    s.batch(T, 3, 1, [e])
    res = await s.expect("results")
    r = res.results[0]
    assert r.status == pb.RESULT_STATUS_OK, r.error
    assert [(m.table, m.key, m.value, m.delete) for m in r.mutations] == [
        ("counts", b"word", b"42", False),
        ("other", b"word", b"", True),
    ]
    ev = seen[0]
    assert (ev.topic, ev.partition, ev.offset, ev.key, ev.value, ev.attempt) == (T, 3, 41, b"word", b"v", 2)
    assert ev.headers == [("a", b"1"), ("a", b"2")]
    assert ev.timestamp is not None and ev.timestamp.timestamp() == 1_700_000_000
    assert ev.timestamp.tzinfo is not None


async def test_state_overlay_within_batch(fw: FakeWorker, run) -> None:
    # The worker delivers a key's queued events together, each with the state
    # before the batch: an event sees the changes of the earlier OK events of
    # its key in the same batch, not those of a non-OK event; the next batch
    # starts from the state the worker sends.
    async def handler(ev: Event) -> None:
        n = int(ev.state("counts") or b"0")
        ev.set_state("counts", str(n + 1))
        if ev.value == b"fail":
            raise Retry("not now")

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    five = pb.TableState(table="counts", has_value=True, value=b"5")
    s.batch(
        T,
        0,
        1,
        [
            event(0, b"", b"a", state=[five]),
            event(1, b"", b"b"),
            event(2, b"fail", b"a", state=[five]),  # not OK: its change is not seen
            event(3, b"", b"a", state=[five]),
            event(4, b"", b"b"),
        ],
    )
    res = (await s.expect("results")).results
    got = {r.offset: [(m.table, m.key, m.value) for m in r.mutations] for r in res}
    assert got == {
        0: [("counts", b"a", b"6")],
        1: [("counts", b"b", b"1")],
        2: [],
        3: [("counts", b"a", b"7")],
        4: [("counts", b"b", b"2")],
    }
    s.batch(T, 0, 1, [event(5, b"", b"a", state=[pb.TableState(table="counts", has_value=True, value=b"100")])])
    r = (await s.until("results"))[-1].results.results[0]
    assert [(m.key, m.value) for m in r.mutations] == [(b"a", b"101")]


def window_state(table: str, seconds: int, nanos: int = 0, value: bytes | None = None) -> pb.TableState:
    """The TableState of one window of a windowed table (value None: absent)."""
    st = pb.TableState(table=table, has_value=value is not None, value=value or b"")
    st.window_start.seconds, st.window_start.nanos = seconds, nanos
    return st


UTC = datetime.timezone.utc
W0 = 1_700_000_000  # a window start, in seconds


async def test_windowed_state_mapping(fw: FakeWorker, run) -> None:
    # Two windows of a hopping table, oldest first, next to a plain table:
    # windows() gives them with UTC datetimes (milliseconds kept); state()
    # gives None for the windowed table; window mutations carry their start.
    seen: list[list[Window]] = []

    async def handler(ev: Event) -> None:
        ws = ev.windows("hop")
        seen.append(ws)
        assert ev.state("hop") is None, "state() of a windowed table is None"
        assert ev.windows("counts") == [], "windows() of a plain table is empty"
        assert ev.windows("undeclared") == []
        n = int(ws[1].value or b"0")
        ev.set_window_state("hop", ws[1].start, str(n + 1))
        ev.delete_window_state("hop", ws[0].start)
        ev.set_state("counts", b"1")
        assert ev.windows("hop") == [Window(ws[0].start, None), Window(ws[1].start, str(n + 1).encode())]
        assert ev.state("counts") == b"1"

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    e = event(
        7,
        key=b"k1",
        state=[
            pb.TableState(table="counts", has_value=False),
            window_state("hop", W0, 0, b"old"),
            window_state("hop", W0 + 30, 250_000_000, b"41"),
        ],
    )
    s.batch(T, 0, 1, [e])
    r = (await s.expect("results")).results[0]
    assert r.status == pb.RESULT_STATUS_OK, r.error
    start0 = datetime.datetime.fromtimestamp(W0, UTC)
    start1 = start0 + datetime.timedelta(seconds=30, milliseconds=250)
    assert seen[0] == [Window(start0, b"old"), Window(start1, b"41")]
    assert all(w.start.tzinfo is not None and w.start.utcoffset() == datetime.timedelta(0) for w in seen[0])
    got = [
        (m.table, m.key, m.value, m.delete, m.HasField("window_start"), m.window_start.seconds, m.window_start.nanos)
        for m in r.mutations
    ]
    assert got == [
        ("hop", b"k1", b"42", False, True, W0 + 30, 250_000_000),
        ("hop", b"k1", b"", True, True, W0, 0),
        ("counts", b"k1", b"1", False, False, 0, 0),  # plain: no window_start
    ]


async def test_window_overlay_within_batch(fw: FakeWorker, run) -> None:
    # A tumbling window count: later events of the key in the batch see the
    # changes of the earlier OK events in the same window (not those of a
    # failed event), an event in another window does not see them, and
    # plain tables keep their overlay alongside.
    async def handler(ev: Event) -> None:
        (w,) = ev.windows("per-min")
        ev.set_window_state("per-min", w.start, str(int(w.value or b"0") + 1))
        ev.set_state("total", str(int(ev.state("total") or b"0") + 1))
        if ev.value == b"fail":
            raise Retry("not now")

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    total = pb.TableState(table="total", has_value=True, value=b"10")

    def ev(offset: int, key: bytes, win: int, value: bytes = b"", had: bytes | None = None) -> pb.Event:
        return event(offset, value, key, state=[total, window_state("per-min", win, 0, had)])

    s.batch(
        T,
        0,
        1,
        [
            ev(0, b"a", W0),
            ev(1, b"b", W0, had=b"5"),
            ev(2, b"a", W0, b"fail"),  # not OK: its changes are not seen
            ev(3, b"a", W0),
            ev(4, b"a", W0 + 60),  # the next window: starts from what was delivered
            ev(5, b"b", W0, had=b"5"),
        ],
    )
    res = (await s.expect("results")).results
    got = {r.offset: [(m.table, m.key, m.value, m.window_start.seconds) for m in r.mutations] for r in res}
    assert got == {
        0: [("per-min", b"a", b"1", W0), ("total", b"a", b"11", 0)],
        1: [("per-min", b"b", b"6", W0), ("total", b"b", b"11", 0)],
        2: [],
        3: [("per-min", b"a", b"2", W0), ("total", b"a", b"12", 0)],
        4: [("per-min", b"a", b"1", W0 + 60), ("total", b"a", b"13", 0)],
        5: [("per-min", b"b", b"7", W0), ("total", b"b", b"12", 0)],
    }
    # The next batch brings fresh state.
    s.batch(T, 0, 1, [ev(6, b"a", W0, had=b"100")])
    r = (await s.until("results"))[-1].results.results[0]
    assert [(m.value, m.window_start.seconds) for m in r.mutations][0] == (b"101", W0)


async def test_window_start_not_delivered_is_retry(fw: FakeWorker, run) -> None:
    # A start naming no delivered window would make the worker end the
    # session: the SDK raises in the handler instead (outcome RETRY).
    async def handler(ev: Event) -> None:
        ev.set_window_state("per-min", datetime.datetime.fromtimestamp(W0 + 60, UTC), b"1")

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0, state=[window_state("per-min", W0)])])
    r = (await s.expect("results")).results[0]
    assert r.status == pb.RESULT_STATUS_RETRY and not r.mutations
    assert "no window of table 'per-min' starting at" in r.error, r.error


def test_window_state_checks() -> None:
    start = datetime.datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    ev = Event(
        key=b"k",
        state={"plain": b"1"},
        windows={"w": [(start + datetime.timedelta(minutes=1), b"2"), Window(start, None)]},
    )
    assert ev.windows("w") == [Window(start, None), Window(start + datetime.timedelta(minutes=1), b"2")]
    with pytest.raises(ValueError, match="timezone-aware"):
        ev.set_window_state("w", start.replace(tzinfo=None), b"x")
    with pytest.raises(ValueError, match="timezone-aware"):
        ev.delete_window_state("w", datetime.datetime(2024, 1, 2, 3, 4))
    with pytest.raises(TypeError, match="must be a datetime"):
        ev.set_window_state("w", 1_700_000_000, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty table"):
        ev.set_window_state("", start, b"x")
    with pytest.raises(ValueError, match="not windowed"):
        ev.set_window_state("plain", start, b"x")
    with pytest.raises(ValueError, match="is windowed"):
        ev.set_state("w", b"x")
    with pytest.raises(ValueError, match="is windowed"):
        ev.delete_state("w")
    with pytest.raises(ValueError, match="no window"):
        ev.set_window_state("w", start + datetime.timedelta(milliseconds=1), b"x")
    assert ev.mutations == []
    # Another time zone names the same instant.
    ev.set_window_state("w", start.astimezone(datetime.timezone(datetime.timedelta(hours=2))), "3")
    assert ev.windows("w")[0] == Window(start, b"3")
    assert ev.mutations == [Mutation("w", b"k", b"3", start)]
    assert ev.mutations[0].window_start.tzinfo is not None  # type: ignore[union-attr]
    assert ev.state("w") is None
    # Naive datetimes are refused when building an event too.
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(windows={"w": [(datetime.datetime(2024, 1, 1), None)]})


async def test_sync_handler_and_late_calls_ignored(fw: FakeWorker, run) -> None:
    kept: list[Event] = []

    def handler(ev: Event) -> None:  # a plain function works too
        kept.append(ev)
        ev.emit("out", value=ev.value)

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0)])
    res = await s.expect("results")
    assert res.results[0].status == pb.RESULT_STATUS_OK
    kept[0].emit("late", value=b"x")  # after the handler returned: ignored
    kept[0].set_state("t", b"x")
    kept[0].set_window_state("w", datetime.datetime.now(datetime.timezone.utc), b"x")
    kept[0].delete_window_state("w", datetime.datetime.now(datetime.timezone.utc))
    assert [r.topic for r in kept[0].emitted] == ["out"]
    assert kept[0].mutations == []


async def test_result_too_large_becomes_retry(fw: FakeWorker, run) -> None:
    fw.welcome.limits.max_message_bytes = 4096

    async def handler(ev: Event) -> None:
        ev.emit("out", value=b"x" * 10000)

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0)])
    r = (await s.expect("results")).results[0]
    assert r.status == pb.RESULT_STATUS_RETRY
    assert "exceeds the 3072 bytes" in r.error and not r.produced


async def test_results_split_under_the_message_size(fw: FakeWorker, run) -> None:
    fw.welcome.limits.max_message_bytes = 64 << 10  # messages split at half: 32 KiB

    async def handler(ev: Event) -> None:
        ev.emit("out", value=b"x" * 10000)

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(o) for o in range(10)])
    offsets, sizes = [], []
    while len(offsets) < 10:
        m = await s.recv()
        if m.WhichOneof("msg") == "results":
            offsets += [r.offset for r in m.results.results]
            sizes.append((len(m.results.results), m.ByteSize()))
            assert m.results.epoch == 1 and all(r.status == pb.RESULT_STATUS_OK for r in m.results.results)
    assert offsets == list(range(10))
    assert [n for n, _ in sizes] == [3, 3, 3, 1], sizes
    assert all(b <= 32 << 10 for _, b in sizes), sizes


# ---- credit -----------------------------------------------------------------


async def test_credit_returned_after_results_when_idle(fw: FakeWorker, run) -> None:
    run.start(ok, credit_events=10, credit_bytes=1 << 20)
    s = await fw.session()
    await assigned(s, 0)
    evs = [event(0, b"abc", b"k"), event(1, b"de", b""), event(2, b"", b"kk")]
    s.batch(T, 0, 1, evs)
    msgs = await s.until("credit")
    assert kinds(msgs) == ["results", "credit"], "credit goes after the results it accounts for"
    c = msgs[-1].credit
    assert (c.events, c.bytes) == (3, 4 + 2 + 2)
    await s.quiet(0.2)


async def test_credit_at_half_window_and_for_dropped_events(fw: FakeWorker, run) -> None:
    gate = asyncio.Event()

    async def handler(ev: Event) -> None:
        if ev.partition == 1:
            await gate.wait()

    run.start(handler, credit_events=10, credit_bytes=1 << 20)
    s = await fw.session()
    await assigned(s, 0, 1)
    s.batch(T, 1, 1, [event(i) for i in range(3)])  # held: p1 is blocked
    s.batch(T, 0, 1, [event(i) for i in range(4)])
    assert kinds(await s.until("results")) == ["results"]
    await s.quiet(0.3)  # 4 done < half of 10, 3 still held: no credit yet
    s.batch(T, 0, 1, [event(4)])
    msgs = await s.until("credit")
    assert kinds(msgs) == ["results", "credit"]
    assert msgs[-1].credit.events == 5  # half the window
    # Events for a partition that is not assigned, or under another epoch,
    # are dropped; their credit comes back (with the 3 still held, only once
    # half the window is reached).
    s.batch(T, 5, 1, [event(0), event(1)])
    s.batch(T, 0, 9, [event(5), event(6), event(7)])
    c = await s.expect("credit")
    assert c.events == 5
    gate.set()
    msgs = await s.until("credit")
    assert kinds(msgs) == ["results", "credit"]
    assert msgs[-1].credit.events == 3  # nothing held any more


async def test_credit_at_half_byte_window(fw: FakeWorker, run) -> None:
    gate = asyncio.Event()

    async def handler(ev: Event) -> None:
        if ev.partition == 1:
            await gate.wait()

    run.start(handler, credit_events=1000, credit_bytes=100)
    s = await fw.session()
    await assigned(s, 0, 1)
    s.batch(T, 1, 1, [event(0, b"x")])  # held
    s.batch(T, 0, 1, [event(0, b"y" * 59)])  # 60 bytes >= half of 100
    msgs = await s.until("credit")
    assert kinds(msgs) == ["results", "credit"]
    assert (msgs[-1].credit.events, msgs[-1].credit.bytes) == (1, 60)
    gate.set()


# ---- ordering and concurrency ------------------------------------------------


async def test_order_per_partition_partitions_concurrent(fw: FakeWorker, run) -> None:
    started = {p: asyncio.Event() for p in range(3)}
    running = {p: 0 for p in range(3)}
    handled: dict[int, list[int]] = {p: [] for p in range(3)}

    async def handler(ev: Event) -> None:
        p = ev.partition
        running[p] += 1
        assert running[p] == 1, "two events of one partition at once"
        started[p].set()
        if ev.offset == 0:
            # Only passes if the other partitions run at the same time.
            for q in started.values():
                await asyncio.wait_for(q.wait(), 5)
        await asyncio.sleep(0.001 * (ev.offset % 3))
        handled[p].append(ev.offset)
        running[p] -= 1
        ev.emit("out", value=ev.value)

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0, 1, 2)
    n = 60
    for lo in range(0, n, 20):
        for p in range(3):
            s.batch(T, p, 1, [event(o, f"{p}:{o}".encode()) for o in range(lo, lo + 20)])
    offsets: dict[int, list[int]] = {p: [] for p in range(3)}
    while sum(len(v) for v in offsets.values()) < 3 * n:
        m = await s.recv()
        if m.WhichOneof("msg") == "results":
            assert m.results.epoch == 1
            offsets[m.results.partition] += [r.offset for r in m.results.results]
    for p in range(3):
        assert handled[p] == list(range(n))
        assert offsets[p] == list(range(n)), "results in offset order per partition"


async def test_concurrency_bound(fw: FakeWorker, run) -> None:
    now = peak = 0

    async def handler(ev: Event) -> None:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.002)
        now -= 1

    run.start(handler, concurrency=2)
    s = await fw.session()
    await assigned(s, 0, 1, 2, 3)
    for p in range(4):
        s.batch(T, p, 1, [event(o) for o in range(10)])
    got = 0
    while got < 40:
        m = await s.recv()
        if m.WhichOneof("msg") == "results":
            got += len(m.results.results)
    assert peak == 2


async def test_results_batched_at_500(fw: FakeWorker, run) -> None:
    run.start(ok, credit_events=5000)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(o) for o in range(1200)])
    sizes = []
    while sum(sizes) < 1200:
        sizes.append(len((await s.expect("results")).results))
    assert max(sizes) <= 500
    # Not one message per result: the handler never awaits, so only the
    # count, the empty queue and a due time-based flush (every 0.1s, which
    # 1200 no-op events rarely reach) send them.
    assert len(sizes) <= 12, sizes


async def _results_messages(s: FakeSession, partition: int, n: int) -> list[list[int]]:
    """The offsets of each Results message for ``partition`` until ``n`` results came."""
    msgs: list[list[int]] = []
    while sum(len(m) for m in msgs) < n:
        m = await s.recv()
        if m.WhichOneof("msg") == "results" and m.results.partition == partition:
            msgs.append([r.offset for r in m.results.results])
    return msgs


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_results_flushed_while_slow(fw: FakeWorker, run, kind: str) -> None:
    # The worker's processing_timeout counts from a partition's previous
    # results: a slow handler with a deep queue must keep sending them.
    async def slow(ev: Event) -> None:
        await asyncio.sleep(0.03)  # a slow handler's work; not synchronisation

    def slow_sync(ev: Event) -> None:
        time.sleep(0.03)  # blocks the event loop: the timer cannot fire

    run.start(slow if kind == "async" else slow_sync)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(o) for o in range(50)])
    msgs = await _results_messages(s, 0, 50)
    assert [o for m in msgs for o in m] == list(range(50))
    # 1.5s of work flushed every 0.1s is about 15 messages; flushed only
    # when the queue empties it is one. At least 3 however loaded the machine.
    assert len(msgs) >= 3, msgs


async def test_results_flushed_while_waiting_for_slot(fw: FakeWorker, run) -> None:
    first, hold = asyncio.Event(), asyncio.Event()
    entered = asyncio.Event()

    async def handler(ev: Event) -> None:
        if ev.partition == 0 and ev.offset == 0:
            entered.set()
            await first.wait()
        else:
            await hold.wait()

    run.start(handler, concurrency=1)
    s = await fw.session()
    await assigned(s, 0, 1)
    try:
        s.batch(T, 0, 1, [event(0), event(1)])
        await asyncio.wait_for(entered.wait(), 5)
        s.batch(T, 1, 1, [event(0)])
        first.set()
        # Offset 1 of partition 0 now waits for the slot behind partition
        # 1's event, or holds it itself; either way offset 0's result must
        # not wait for it.
        msgs = await _results_messages(s, 0, 1)
        assert msgs[0] == [0]
    finally:
        hold.set()


# ---- assignments and revocations ---------------------------------------------


async def test_revoke_finishes_in_progress_drops_queued(fw: FakeWorker, run) -> None:
    gate = asyncio.Event()
    handled: list[int] = []

    async def handler(ev: Event) -> None:
        handled.append(ev.offset)
        await gate.wait()

    run.start(handler, credit_events=10)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(o) for o in range(5)])
    await until(lambda: handled)
    s.revoke(T, 0, 1, deadline=5)
    await s.quiet(0.2)  # the event in progress holds the RevokeAck back
    gate.set()
    msgs = await s.until("revoke_ack")
    assert kinds(msgs) == ["results", "credit", "revoke_ack"]
    assert [r.offset for r in msgs[0].results.results] == [0]
    assert msgs[1].credit.events == 5  # 4 dropped + 1 done
    assert handled == [0]
    # Late events of the revoked epoch are dropped, their credit returned.
    s.batch(T, 0, 1, [event(5)])
    assert (await s.expect("credit")).events == 1
    assert handled == [0]


async def test_revoke_deadline_cancels_handler(fw: FakeWorker, run) -> None:
    begun: list[int] = []

    async def handler(ev: Event) -> None:
        begun.append(ev.offset)
        await asyncio.sleep(60)  # lets the cancellation through

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0)])
    await until(lambda: begun)
    t0 = time.monotonic()
    s.revoke(T, 0, 1, deadline=0.5)
    msgs = await s.until("revoke_ack")
    assert time.monotonic() - t0 < 1.5
    assert kinds(msgs) == ["results", "credit", "revoke_ack"]
    r = msgs[0].results.results[0]
    assert r.status == pb.RESULT_STATUS_RETRY and "cancelled" in r.error


async def test_revoke_deadline_passed_result_discarded(fw: FakeWorker, run) -> None:
    begun: list[int] = []

    async def handler(ev: Event) -> None:
        begun.append(ev.offset)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(1.0)  # ignores the cancellation for a while
        ev.emit("out", value=b"late")

    run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0)])
    await until(lambda: begun)
    s.revoke(T, 0, 1, deadline=0.3)
    msgs = await s.until("revoke_ack", timeout=3)
    assert kinds(msgs) == ["revoke_ack"], "RevokeAck at the deadline, without the result"
    # The late result is never sent; its credit comes back.
    c = await s.expect("credit", timeout=3)
    assert c.events == 1
    await s.quiet(0.3)


async def test_revoke_of_unknown_partition_acked_at_once(fw: FakeWorker, run) -> None:
    run.start(ok)
    s = await fw.session()
    s.revoke(T, 5, 3)
    ack = await s.expect("revoke_ack")
    assert (ack.topic, ack.partition, ack.epoch) == (T, 5, 3)


async def test_assign_duplicates_and_older_epochs(fw: FakeWorker, run) -> None:
    run.start(ok)
    s = await fw.session()
    await assigned(s, 0, epoch=5)
    s.assign(T, 0, 5)  # duplicate: acknowledged again
    assert (await s.expect("assign_ack")).epoch == 5
    s.assign(T, 0, 4)  # older: ignored
    await s.quiet(0.2)
    s.batch(T, 0, 5, [event(0)])
    assert (await s.expect("results")).epoch == 5


async def test_assign_newer_epoch_waits_for_event_in_progress(fw: FakeWorker, run) -> None:
    gate = asyncio.Event()
    log: list[tuple[str, int]] = []

    async def handler(ev: Event) -> None:
        log.append(("start", ev.offset))
        if ev.offset == 0:
            await gate.wait()
        log.append(("end", ev.offset))

    run.start(handler, credit_events=100)
    s = await fw.session()
    await assigned(s, 0, epoch=1)
    s.batch(T, 0, 1, [event(0), event(1), event(2)])
    await until(lambda: log)
    s.assign(T, 0, 2)  # without a Revoke first
    assert (await s.expect("assign_ack")).epoch == 2
    s.batch(T, 0, 2, [event(1), event(2)])
    await asyncio.sleep(0.2)
    assert log == [("start", 0)], "the new epoch's events wait for the old event in progress"
    gate.set()
    r1 = await s.expect("results")
    assert (r1.epoch, [r.offset for r in r1.results]) == (1, [0])
    msgs = await s.until("results")
    r2 = msgs[-1].results
    assert (r2.epoch, [r.offset for r in r2.results]) == (2, [1, 2])
    assert log == [("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]


async def test_committed_callback_and_unknown_messages(fw: FakeWorker, run) -> None:
    got: list[tuple[str, int, int]] = []

    def on_committed(topic: str, partition: int, offset: int) -> None:
        got.append((topic, partition, offset))
        if offset == 13:
            raise RuntimeError("callback bug")  # logged, harmless

    run.start(ok, on_committed=on_committed)
    s = await fw.session()
    await assigned(s, 0)
    s.committed(T, 0, 13)
    s.committed(T, 0, 42)
    s.send(state_reply=pb.StateReply(request_id=9))  # nobody asked: ignored
    s.send(welcome=pb.Welcome(session_id="again"))  # ignored
    s.batch(T, 0, 1, [event(0)])
    assert (await s.expect("results")).results[0].status == pb.RESULT_STATUS_OK
    assert got == [(T, 0, 13), (T, 0, 42)]


# ---- sessions: reconnects and permanent errors ---------------------------------


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, None])
async def test_reconnect_same_instance_id(fw: FakeWorker, run, code) -> None:
    gate = asyncio.Event()
    cancelled = asyncio.Event()

    begun: list[int] = []

    async def handler(ev: Event) -> None:
        begun.append(ev.offset)
        if ev.offset == 0:
            try:
                await gate.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    a, task = run.start(handler)
    s1 = await fw.session()
    await assigned(s1, 0)
    s1.batch(T, 0, 1, [event(0)])
    await until(lambda: begun)
    s1.end(code, "worker going away")  # None: the worker ends the stream with OK
    s2 = await fw.session()
    assert s2.hello.instance_id == s1.hello.instance_id == a.instance_id
    await asyncio.wait_for(cancelled.wait(), 5)  # the lost session's handler was cancelled
    # Nothing of the old session is sent on the new one; credit starts afresh.
    assert s2.hello.credit.events == 1000
    await assigned(s2, 0, epoch=2)
    s2.batch(T, 0, 2, [event(1)])
    r = await s2.expect("results")
    assert (r.epoch, [x.offset for x in r.results]) == (2, [1])
    assert not task.done()


async def test_reconnect_when_worker_unreachable(run) -> None:
    # Nothing listens there yet: the agent retries with backoff until it does.
    fw = FakeWorker()
    a, task = run.start(ok, addr=fw.addr)
    await asyncio.sleep(0.3)
    assert not a.connected and not task.done()
    run.fw = fw
    await fw.start()
    try:
        s = await fw.session(timeout=5)
        assert s.hello.instance_id == a.instance_id
    finally:
        a.stop()
        await asyncio.wait_for(task, 5)
        await fw.stop()


@pytest.mark.parametrize(
    "code,exc",
    [
        (grpc.StatusCode.NOT_FOUND, UnknownAgentError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, UnauthenticatedError),
        (grpc.StatusCode.FAILED_PRECONDITION, ProtocolVersionError),
        (grpc.StatusCode.INVALID_ARGUMENT, ProtocolViolationError),
        (grpc.StatusCode.UNIMPLEMENTED, NotSupportedError),
    ],
)
async def test_permanent_errors_raise(fw: FakeWorker, run, code, exc) -> None:
    fw.reject = (code, "the reason")
    _, task = run.start(ok, name="routr")
    with pytest.raises(exc) as e:
        await asyncio.wait_for(task, 5)
    assert isinstance(e.value, RejectedError)
    assert e.value.code == code and e.value.message == "the reason" and e.value.agent == "routr"
    msg = str(e.value)
    assert msg.startswith(f"worker at {fw.addr} rejected agent 'routr': ")
    assert msg.endswith(f": the reason ({code.name})")
    assert len(fw.all) == 1, "no reconnection after a permanent error"


def _status_details(code: int, message: str, domain: str, reason: str) -> bytes:
    """A serialized google.rpc.Status with one ErrorInfo, built by hand (the
    SDK has no package of the google.rpc messages)."""
    from google.protobuf import any_pb2

    def ld(field: int, b: bytes) -> bytes:
        assert len(b) < 128
        return bytes([field << 3 | 2, len(b)]) + b

    info = ld(1, reason.encode()) + ld(2, domain.encode())
    detail = any_pb2.Any(type_url="type.googleapis.com/google.rpc.ErrorInfo", value=info).SerializeToString()
    return bytes([1 << 3, code]) + ld(2, message.encode()) + ld(3, detail)


async def test_wrong_app_raises(fw: FakeWorker, run) -> None:
    msg = 'hello.app "app" does not match this worker\'s app "billing"'
    details = _status_details(grpc.StatusCode.FAILED_PRECONDITION.value[0], msg, "eddy.v1", "APP_MISMATCH")
    fw.reject = (grpc.StatusCode.FAILED_PRECONDITION, msg, (("grpc-status-details-bin", details),))
    _, task = run.start(ok, name="count")
    with pytest.raises(WrongAppError) as e:
        await asyncio.wait_for(task, 5)
    assert isinstance(e.value, RejectedError) and not isinstance(e.value, ProtocolVersionError)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.message == msg
    assert "the worker belongs to another app" in str(e.value)
    assert len(fw.all) == 1, "no reconnection after a permanent error"


async def test_unimplemented_worker(run) -> None:
    fw = await FakeWorker(serve_agents=False).start()  # no AgentService at all
    try:
        _, task = run.start(ok, addr=fw.addr)
        with pytest.raises(NotSupportedError, match="does not support remote agents"):
            await asyncio.wait_for(task, 5)
    finally:
        await fw.stop()


async def test_run_twice(fw: FakeWorker, run) -> None:
    a, _ = run.start(ok)
    await fw.session()
    with pytest.raises(RuntimeError, match="more than once"):
        await a.run()


# ---- graceful stop --------------------------------------------------------------


async def test_graceful_stop(fw: FakeWorker, run) -> None:
    gate = asyncio.Event()
    handled: list[int] = []

    async def handler(ev: Event) -> None:
        handled.append(ev.offset)
        await gate.wait()
        ev.emit("out", value=b"done")

    a, task = run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(o) for o in range(3)])
    await until(lambda: handled)
    a.stop()
    await asyncio.sleep(0.2)
    s.assign(T, 1, 1)  # ignored while stopping
    await asyncio.sleep(0.1)
    assert not task.done() and not s.half_closed.is_set()
    gate.set()
    await asyncio.wait_for(task, 5)  # returns None
    assert handled == [0], "queued events are dropped"
    assert s.half_closed.is_set()
    msgs = s.received
    assert kinds(msgs) == ["assign_ack", "results"], "no AssignAck while stopping; the result before the half-close"
    r = msgs[1].results.results
    assert [x.offset for x in r] == [0] and r[0].status == pb.RESULT_STATUS_OK
    assert not a.connected


async def test_graceful_stop_drain_timeout(fw: FakeWorker, run) -> None:
    begun: list[int] = []

    async def handler(ev: Event) -> None:
        begun.append(ev.offset)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(2)  # ignores the cancellation

    a, task = run.start(handler, drain_timeout=0.3)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0)])
    await until(lambda: begun)
    t0 = time.monotonic()
    a.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - t0 < 1.5
    assert kinds(s.received) == ["assign_ack"], "a result not ready at the drain timeout is not sent"
    assert s.half_closed.is_set()


async def test_stop_before_connected(run) -> None:
    fw = FakeWorker()  # not listening
    a, task = run.start(ok, addr=fw.addr, backoff_min=0.5, backoff_max=1)
    await asyncio.sleep(0.1)
    a.stop()
    await asyncio.wait_for(task, 2)


async def test_cancel_run_stops_at_once(fw: FakeWorker, run) -> None:
    begun: list[int] = []

    async def handler(ev: Event) -> None:
        begun.append(ev.offset)
        await asyncio.sleep(60)

    a, task = run.start(handler)
    s = await fw.session()
    await assigned(s, 0)
    s.batch(T, 0, 1, [event(0)])
    await until(lambda: begun)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    await asyncio.wait_for(s.finished.wait(), 2)


# ---- App ---------------------------------------------------------------------------


async def test_app_runs_agents_and_raises_rejection(fw: FakeWorker) -> None:
    fw.reject_agents["nope"] = (grpc.StatusCode.NOT_FOUND, 'unknown agent "nope"')
    app = App(fw.addr, app="app", token="", backoff_min=0.01, backoff_max=0.05)

    @app.agent("count")
    async def count(ev: Event) -> None:
        ev.emit("out", value=ev.value)

    @app.agent()
    async def nope(ev: Event) -> None:
        pass

    assert set(app.agents) == {"count", "nope"}
    assert app.agents["count"].instance_id == app.agents["nope"].instance_id == app.instance_id
    t = asyncio.ensure_future(app.run())
    with pytest.raises(UnknownAgentError, match='unknown agent "nope"'):
        await asyncio.wait_for(t, 5)
    # The other agent was stopped gracefully: it closed its side.
    s = next(x for x in fw.all if x.hello.agent == "count")
    await asyncio.wait_for(s.half_closed.wait(), 5)
    # The decorator returns the function, callable directly in tests.
    ev = Event(value=b"x")
    await count(ev)
    assert ev.emitted[0].value == b"x"


def test_app_checks_options_and_names() -> None:
    with pytest.raises(ValueError, match="credit_events"):
        App("127.0.0.1:1", app="app", credit_events=0)
    app = App("127.0.0.1:1", app="app")
    app.agent("a")(ok)
    with pytest.raises(ValueError, match="already registered"):
        app.agent("a")(ok)
    with pytest.raises(RuntimeError, match="no agents"):
        asyncio.run(App("127.0.0.1:1", app="app").run())


# ---- App.main as a program: signals --------------------------------------------

SLOW_APP = """
import asyncio, sys
from eddy_agent import App, Event
app = App(sys.argv[1], app="app", token="", backoff_min=0.01, drain_timeout=float(sys.argv[2]))

@app.agent("pass")
async def handler(ev: Event) -> None:
    print("started", ev.offset, flush=True)
    await asyncio.sleep(float(sys.argv[3]))
    ev.emit("out", value=ev.value)

app.main()
"""


async def _start_program(fw: FakeWorker, tmp_path, drain: float, work: float):
    script = tmp_path / "slow_app.py"
    script.write_text(SLOW_APP)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), fw.addr, str(drain), str(work),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        s = await fw.session(timeout=20)
        await assigned(s, 0)
        s.batch(T, 0, 1, [event(o) for o in range(3)])
        assert proc.stdout is not None
        seen = b""
        while b"started 0" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, seen
            seen += line
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, s


async def test_sigterm_finishes_event_in_progress(fw: FakeWorker, tmp_path) -> None:
    proc, s = await _start_program(fw, tmp_path, drain=5, work=1.0)
    try:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
        out = (await proc.stdout.read()).decode()
        assert rc == 0, out
        assert "SIGTERM: stopping gracefully" in out and "started 1" not in out
        assert kinds(s.received) == ["assign_ack", "results"]
        r = s.received[1].results.results
        assert [x.offset for x in r] == [0] and r[0].status == pb.RESULT_STATUS_OK
        assert s.half_closed.is_set()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_second_signal_exits_at_once(fw: FakeWorker, tmp_path) -> None:
    proc, s = await _start_program(fw, tmp_path, drain=30, work=30)
    try:
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert proc.returncode is None  # draining
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 5)
        assert rc == 128 + signal.SIGINT
        assert kinds(s.received) == ["assign_ack"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
