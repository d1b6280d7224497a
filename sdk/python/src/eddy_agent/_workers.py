"""One session per worker of the app, kept up to date with the workers' list
(docs/agents.md, "Several workers"; the Go SDK's client/agent/workers.go does
the same)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Optional


from ._gen.eddy.v1 import lifecycle_pb2, lifecycle_pb2_grpc

if TYPE_CHECKING:
    from .agent import Agent

LIST_TIMEOUT = 3.0
"""Seconds one ListWorkers call to one worker may take."""
LEFT_AFTER = 2
"""Lists in a row a worker must be missing from before its session is
stopped: one list taken in the middle of a rebalance may miss a worker that is
still there."""


class _Link:
    """The sessions with one worker. ``worker_id`` is "" while unknown (an
    address of ``addr`` before any worker listed the app's workers): links are
    matched to workers by id, so that a worker dialled under another name than
    it advertises never gets two sessions of the instance, which would
    replace each other."""

    def __init__(self, addr: str, worker_id: str) -> None:
        self.addr = addr
        self.worker_id = worker_id
        self.misses = 0
        self.stop = asyncio.Event()
        self.task: Optional[asyncio.Task[Optional[BaseException]]] = None


class Workers:
    def __init__(self, agent: Agent) -> None:
        self.a = agent
        self.links: list[_Link] = []
        self.stopping: list[_Link] = []
        self.rejected: asyncio.Queue[BaseException] = asyncio.Queue()

    async def run(self) -> None:
        """Until the agent's stop (return once every session stopped) or a
        rejection (raised once the other sessions stopped)."""
        stop = self.a._stop
        assert stop is not None
        every = self.a._opts.discovery
        try:
            await self._refresh_until(stop)
            rej: Optional[BaseException] = None
            while not stop.is_set():
                wait_stop = asyncio.ensure_future(stop.wait())
                wait_rej = asyncio.ensure_future(self.rejected.get())
                try:
                    await asyncio.wait({wait_stop, wait_rej}, timeout=every or None, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wait_stop.cancel()
                    wait_rej.cancel()
                if wait_rej.done() and not wait_rej.cancelled():
                    rej = wait_rej.result()
                    break
                await self._refresh_until(stop)
            await self._stop_all()
            if rej is not None and not stop.is_set():
                raise rej
        except asyncio.CancelledError:
            for link in self.links + self.stopping:
                if link.task is not None:
                    link.task.cancel()
            raise

    async def _refresh_until(self, stop: asyncio.Event) -> None:
        """refresh, given up when stop is set first (a list asked of a
        worker that does not answer takes up to LIST_TIMEOUT; refresh
        changes nothing before its answer)."""
        if stop.is_set():
            return
        task = asyncio.ensure_future(self.refresh())
        wait_stop = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, wait_stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wait_stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.done() and not task.cancelled():
            task.result()

    async def _stop_all(self) -> None:
        links = self.links + self.stopping
        for link in links:
            link.stop.set()
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh(self) -> None:
        """Read the app's workers and start and stop links to match; when no
        worker answers, the links stay (or go to the ``addr`` addresses)."""
        self.stopping = [link for link in self.stopping if link.task is not None and not link.task.done()]
        if not self.a._opts.discovery:
            self._seeds()
            return
        resp, asked = await self._list()
        if resp is None:
            self._seeds()
            return
        want = {w.worker_id: w.grpc_address for w in resp.workers if w.worker_id and w.grpc_address}
        # The worker that answered is alive even when the group does not
        # list it yet (it is joining): keep its session, at the address asked.
        if resp.worker_id:
            want.setdefault(resp.worker_id, asked)
            for link in self.links:
                if link.addr == asked and not link.worker_id and self._by_id(resp.worker_id) is None:
                    link.worker_id = resp.worker_id
        for link in list(self.links):
            if not link.worker_id:
                wid = next((i for i, a in want.items() if a == link.addr), "")
                if wid and self._by_id(wid) is None:
                    link.worker_id = wid
                else:
                    self._stop(link, "not an advertised worker address")
                    continue
            if link.worker_id in want:
                link.misses = 0
                continue
            link.misses += 1
            if link.misses >= LEFT_AFTER:
                self._stop(link, "the worker left the app")
        for wid in sorted(want):
            if self._by_id(wid) is None and not self._is_stopping(want[wid]):
                self._start(want[wid], wid)

    def _seeds(self) -> None:
        if self.links:
            return
        for addr in dict.fromkeys(self.a._opts.addrs):
            if not self._is_stopping(addr):
                self._start(addr, "")

    async def _list(self) -> tuple[Optional[lifecycle_pb2.ListWorkersResponse], str]:
        addrs = [link.addr for link in self.links if not link.worker_id]  # identify these first
        addrs += [link.addr for link in self.links] + self.a._opts.addrs
        stop = self.a._stop
        for addr in dict.fromkeys(addrs):
            if stop is not None and stop.is_set():
                break
            try:
                return await self._list_at(addr), addr
            except Exception as e:  # noqa: BLE001 - any failure: ask the next one
                self.a._log.debug("no list of workers at %s: %s", addr, e)
        return None, ""

    async def _list_at(self, addr: str) -> lifecycle_pb2.ListWorkersResponse:
        token = self.a._opts.token
        md = (("authorization", f"Bearer {token}"),) if token else None  # needed when reads are protected
        channel = self.a._channel(addr)
        try:
            stub = lifecycle_pb2_grpc.LifecycleServiceStub(channel)  # type: ignore[no-untyped-call]
            resp: lifecycle_pb2.ListWorkersResponse = await stub.ListWorkers(
                lifecycle_pb2.ListWorkersRequest(), timeout=LIST_TIMEOUT, metadata=md
            )
            return resp
        finally:
            await channel.close(None)

    def _start(self, addr: str, worker_id: str) -> None:
        link = _Link(addr, worker_id)
        self.a._log.info("connecting to the worker at %s (%s)", addr, worker_id or "id not known yet")
        link.task = asyncio.ensure_future(self._serve(link))
        self.links.append(link)

    async def _serve(self, link: _Link) -> Optional[BaseException]:
        rej = await self.a._run_link(link.addr, link.stop)
        if rej is not None:
            self.rejected.put_nowait(rej)
        return rej

    def _stop(self, link: _Link, why: str) -> None:
        self.a._log.info("leaving the worker at %s (%s): %s", link.addr, link.worker_id, why)
        link.stop.set()
        self.links.remove(link)
        self.stopping.append(link)

    def _is_stopping(self, addr: str) -> bool:
        return any(link.addr == addr for link in self.stopping)

    def _by_id(self, wid: str) -> Optional[_Link]:
        return next((link for link in self.links if link.worker_id == wid), None)


__all__ = ["Workers"]
