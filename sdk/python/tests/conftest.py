"""Fixtures: a fake worker for the unit tests; a real Kafka broker and the
real worker (built from this repository) for the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from eddy_agent import Agent, Handler
from fakeworker import FakeWorker
from harness import Broker, build_bins


@pytest.fixture
async def fw() -> AsyncIterator[FakeWorker]:
    """A fake worker on 127.0.0.1:0."""
    w = await FakeWorker().start()
    yield w
    await w.stop()


class Runner:
    """Starts agents against the fake worker and stops them after the test."""

    def __init__(self, fw: FakeWorker) -> None:
        self.fw = fw
        self.items: list[tuple[Agent, asyncio.Task[None]]] = []

    def start(self, handler: Handler, name: str = "pass", **kw: Any) -> tuple[Agent, asyncio.Task[None]]:
        kw.setdefault("app", "app")
        kw.setdefault("addr", self.fw.addr)
        kw.setdefault("backoff_min", 0.01)
        kw.setdefault("backoff_max", 0.05)
        kw.setdefault("drain_timeout", 2.0)
        kw.setdefault("token", "")
        a = Agent(name, handler, **kw)
        t = asyncio.ensure_future(a.run())
        self.items.append((a, t))
        return a, t

    async def close(self) -> None:
        for a, _ in self.items:
            a.stop()
        for _, t in self.items:
            try:
                await asyncio.wait_for(asyncio.shield(t), 10)
            except asyncio.TimeoutError:
                t.cancel()
            except BaseException:
                pass


@pytest.fixture
async def run(fw: FakeWorker) -> AsyncIterator[Runner]:
    r = Runner(fw)
    yield r
    await r.close()


# ---- end to end -------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """A real single-node Kafka broker for the session (scripts/kafka/start.sh).

    Fails every test that needs it, loudly, when it cannot start: it never skips."""
    b = Broker()
    try:
        addr = b.start()
    except Exception as e:
        pytest.fail(f"Kafka broker: {e}", pytrace=False)
    yield addr
    b.stop()


@pytest.fixture(scope="session")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """worker, workerctl and the Go test agent, built from this repository."""
    try:
        return build_bins(str(tmp_path_factory.mktemp("bin")))
    except Exception as e:
        pytest.fail(f"building the Go binaries: {e}", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


class Procs:
    """Processes of one end-to-end test: stopped after it, their output
    printed when it failed."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, p: Any) -> Any:
        self.items.append(p)
        return p


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[Procs]:
    ps = Procs()
    yield ps
    failed = any(getattr(request.node, f"rep_{w}", None) is not None and getattr(request.node, f"rep_{w}").failed
                 for w in ("setup", "call"))
    for p in reversed(ps.items):
        try:
            p.stop() if hasattr(p, "stop") else p.kill()
        except Exception:
            pass
        if failed:
            name = getattr(p, "name", None) or type(p).__name__.lower()
            print(f"---- output of {name} ----\n{p.output[-20000:]}")
