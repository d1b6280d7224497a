"""The agent connects to every worker of the app (docs/agents.md, "Several
workers"), on fake workers that answer ListWorkers."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from eddy_agent import Agent, Event
from eddy_agent._gen.eddy.v1 import lifecycle_pb2
from fakeworker import FakeWorker


async def ok(ev: Event) -> None:
    pass


async def until(cond: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)


class FakeApp:
    """Fake workers that all answer ListWorkers with ``members``."""

    def __init__(self, n: int) -> None:
        self.ws = [FakeWorker() for _ in range(n)]
        self.ids = {id(w): f"w{i + 1}" for i, w in enumerate(self.ws)}
        self.members: list[FakeWorker] = []
        for w in self.ws:
            w.list = self._lister(w)

    def _lister(self, w: FakeWorker) -> Callable[[], lifecycle_pb2.ListWorkersResponse]:
        return lambda: lifecycle_pb2.ListWorkersResponse(
            worker_id=self.ids[id(w)],
            workers=[lifecycle_pb2.WorkerInfo(worker_id=self.ids[id(m)], grpc_address=m.addr) for m in self.members],
        )

    async def __aenter__(self) -> FakeApp:
        for w in self.ws:
            await w.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for w in self.ws:
            await w.stop()


def open_sessions(w: FakeWorker) -> int:
    return sum(1 for s in w.all if not s.half_closed.is_set() and not s.finished.is_set())


def agent(addr: str, **kw: Any) -> Agent:
    kw.setdefault("discovery", 0.02)
    return Agent("pass", ok, app="app", addr=addr, token="", backoff_min=0.01, backoff_max=0.05, drain_timeout=1, **kw)


async def test_discovery_follows_workers() -> None:
    async with FakeApp(3) as fa:
        w1, w2, w3 = fa.ws
        fa.members = [w1, w2]
        a = agent(w1.addr)
        task = asyncio.ensure_future(a.run())
        try:

            def counts(*want: int) -> Callable[[], bool]:
                return lambda: [open_sessions(w) for w in fa.ws] == list(want) and len(a.sessions) == sum(want)

            await until(counts(1, 1, 0), what="sessions with w1 and w2 only")
            fa.members = [w1, w2, w3]
            await until(counts(1, 1, 1), what="a session with w3 too")
            fa.members = [w1, w3]
            await until(counts(1, 0, 1), what="w2's session closed by the agent")
            assert all(s.hello.instance_id == a.instance_id for w in fa.ws for s in w.all)
            assert len(w1.all) == 1, "w1's session kept throughout"
        finally:
            a.stop()
            await asyncio.wait_for(task, 10)


async def test_discovery_one_session_per_worker() -> None:
    """An addr naming a worker otherwise than it advertises itself is matched
    to it by id: never a second session of the instance at one worker."""
    async with FakeApp(2) as fa:
        w1, w2 = fa.ws
        fa.members = [w1, w2]
        lister = w1.list
        w1.list = None  # starting: the agent connects to the address given
        seed = w1.addr.replace("127.0.0.1", "localhost")
        a = agent(seed, discovery=0.01)
        task = asyncio.ensure_future(a.run())
        try:
            await until(lambda: open_sessions(w1) == 1, what="a session with w1 at the address given")
            w1.list = lister
            await until(lambda: open_sessions(w1) == 1 and open_sessions(w2) == 1, what="sessions with w1 and w2")
            n = w1.lists + w2.lists
            await until(lambda: w1.lists + w2.lists >= n + 10, what="ten more lists")
            assert len(w1.all) == 1
            assert set(a.sessions) == {seed, w2.addr}
        finally:
            a.stop()
            await asyncio.wait_for(task, 10)


async def test_discovery_falls_back_and_can_be_off() -> None:
    async with FakeApp(2) as fa:
        w1, w2 = fa.ws
        for w in fa.ws:
            w.list = None
        a = agent(f"{w1.addr}, {w2.addr}")
        task = asyncio.ensure_future(a.run())
        try:
            await until(lambda: open_sessions(w1) == 1 and open_sessions(w2) == 1, what="sessions with both addresses")
        finally:
            a.stop()
            await asyncio.wait_for(task, 10)
    async with FakeApp(2) as fa:
        w1, w2 = fa.ws
        fa.members = [w1, w2]
        a = agent(w1.addr, discovery=0)
        task = asyncio.ensure_future(a.run())
        try:
            await until(lambda: open_sessions(w1) == 1, what="a session with the one address")
        finally:
            a.stop()
            await asyncio.wait_for(task, 10)
        assert w1.lists + w2.lists == 0 and not w2.all


def test_bad_discovery_named() -> None:
    try:
        Agent("pass", ok, app="app", addr="127.0.0.1:1,nohost", discovery=-1)
    except ValueError as e:
        assert "discovery: -1 is negative" in str(e) and "addr: invalid worker address 'nohost'" in str(e), e
    else:
        raise AssertionError("no ValueError")
