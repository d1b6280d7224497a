"""An in-process fake of the worker's agent endpoint, for unit tests.

A grpc.aio server on 127.0.0.1:0 implementing eddy.v1.AgentService/Connect.
Each Connect stream becomes a FakeSession the test drives by hand: it reads
what the agent sent (in order) and sends assignments, batches, revocations,
commit notices, or ends the stream with a status.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Optional

import grpc
from google.protobuf import timestamp_pb2

from eddy_agent._gen.eddy.v1 import agent_pb2 as pb
from eddy_agent._gen.eddy.v1 import agent_pb2_grpc, common_pb2, lifecycle_pb2, lifecycle_pb2_grpc

_END = object()


class FakeSession:
    """One Connect stream, seen from the worker."""

    def __init__(self, hello: pb.ConnectRequest, metadata: dict[str, str], sid: str) -> None:
        self.first = hello
        self.hello = hello.hello
        self.metadata = metadata
        self.id = sid
        self.inbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.half_closed = asyncio.Event()  # the agent closed its side
        self.finished = asyncio.Event()  # the RPC is over
        self.end_code: Optional[grpc.StatusCode] = None
        self.received: list[pb.ConnectRequest] = []  # everything, in order

    # -- worker -> agent

    def send(self, **msg: Any) -> None:
        self.outbox.put_nowait(pb.ConnectResponse(**msg))

    def assign(self, topic: str, partition: int, epoch: int) -> None:
        self.send(assign=pb.Assign(topic=topic, partition=partition, epoch=epoch))

    def batch(self, topic: str, partition: int, epoch: int, events: list[pb.Event]) -> None:
        self.send(event_batch=pb.EventBatch(topic=topic, partition=partition, epoch=epoch, events=events))

    def revoke(self, topic: str, partition: int, epoch: int, deadline: Optional[float] = None) -> None:
        """deadline: seconds from now (wall clock), or None for no deadline field."""
        import time

        r = pb.Revoke(topic=topic, partition=partition, epoch=epoch)
        if deadline is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromNanoseconds(int((time.time() + deadline) * 1e9))
            r.deadline.CopyFrom(ts)
        self.send(revoke=r)

    def committed(self, topic: str, partition: int, offset: int) -> None:
        self.send(committed=pb.Committed(topic=topic, partition=partition, offset=offset))

    def end(self, code: Optional[grpc.StatusCode] = None, details: str = "") -> None:
        """End the stream: OK when code is None, else with that status."""
        self.outbox.put_nowait((_END, code, details))

    # -- agent -> worker

    async def recv(self, timeout: float = 5) -> pb.ConnectRequest:
        """The next message from the agent."""
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def expect(self, kind: str, timeout: float = 5) -> Any:
        """The next message, which must be of ``kind`` (results, credit, ...)."""
        m = await self.recv(timeout)
        got = m.WhichOneof("msg")
        assert got == kind, f"want {kind}, got {got}: {m}"
        return getattr(m, kind)

    async def until(self, kind: str, timeout: float = 5) -> list[pb.ConnectRequest]:
        """Messages up to and including the first of ``kind``."""
        out = []
        while True:
            m = await self.recv(timeout)
            out.append(m)
            if m.WhichOneof("msg") == kind:
                return out

    async def quiet(self, secs: float = 0.3) -> None:
        """Assert that the agent sends nothing for ``secs``."""
        try:
            m = await asyncio.wait_for(self.inbox.get(), secs)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message: {m}")


class FakeWorker:
    """The server. ``reject`` makes it end every stream after Hello with that
    (code, details[, trailing metadata]); ``welcome`` is what it answers otherwise (None: no
    Welcome at all); ``end_on_half_close`` ends a stream with OK once the
    agent closes its side, as the real worker does."""

    def __init__(self, serve_agents: bool = True, tls: Optional[grpc.ServerCredentials] = None) -> None:
        self.server = grpc.aio.server()
        if serve_agents:
            agent_pb2_grpc.add_AgentServiceServicer_to_server(_Servicer(self), self.server)
        lifecycle_pb2_grpc.add_LifecycleServiceServicer_to_server(_Lifecycle(self), self.server)
        # list, when set, answers ListWorkers (UNIMPLEMENTED otherwise, as a
        # worker that predates the call); lists counts the answers.
        self.list: Optional[Any] = None
        self.lists = 0
        if tls is not None:
            self.port = self.server.add_secure_port("127.0.0.1:0", tls)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        self.sessions: asyncio.Queue[FakeSession] = asyncio.Queue()
        self.all: list[FakeSession] = []
        self.reject: Optional[tuple[Any, ...]] = None
        self.reject_agents: dict[str, tuple[Any, ...]] = {}
        self.welcome: Optional[pb.Welcome] = pb.Welcome(
            limits=pb.Limits(max_message_bytes=4 << 20, max_batch_events=500, max_batch_bytes=1 << 20, max_retries=5)
        )
        self.end_on_half_close = True
        self._ids = itertools.count(1)

    async def start(self) -> FakeWorker:
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop(None)

    async def session(self, timeout: float = 5) -> FakeSession:
        """The next session (stream that sent Hello)."""
        return await asyncio.wait_for(self.sessions.get(), timeout)


class _Lifecycle(lifecycle_pb2_grpc.LifecycleServiceServicer):
    def __init__(self, fw: FakeWorker) -> None:
        self.fw = fw

    async def ListWorkers(self, request: Any, context: grpc.aio.ServicerContext) -> lifecycle_pb2.ListWorkersResponse:  # noqa: N802
        if self.fw.list is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")
        self.fw.lists += 1
        resp: lifecycle_pb2.ListWorkersResponse = self.fw.list()
        return resp


class _Servicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, fw: FakeWorker) -> None:
        self.fw = fw

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        fw = self.fw
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("msg") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message must be Hello")
        md = {k: v for k, v in context.invocation_metadata() or ()}
        s = FakeSession(first, md, f"fake-{next(fw._ids)}")
        fw.all.append(s)
        fw.sessions.put_nowait(s)
        rej = fw.reject_agents.get(first.hello.agent) or fw.reject
        try:
            if rej is not None:
                s.end_code = rej[0]
                await context.abort(rej[0], rej[1], trailing_metadata=rej[2] if len(rej) > 2 else ())
            if fw.welcome is not None:
                w = pb.Welcome()
                w.CopyFrom(fw.welcome)
                w.session_id = s.id
                await context.write(pb.ConnectResponse(welcome=w))

            async def read() -> None:
                while True:
                    m = await context.read()
                    if m is grpc.aio.EOF:
                        s.half_closed.set()
                        if fw.end_on_half_close:
                            s.end()
                        return
                    s.received.append(m)
                    s.inbox.put_nowait(m)

            reader = asyncio.ensure_future(read())
            try:
                while True:
                    item = await s.outbox.get()
                    if isinstance(item, tuple) and item and item[0] is _END:
                        _, code, details = item
                        s.end_code = code
                        if code is not None:
                            await context.abort(code, details)
                        return
                    await context.write(item)
            finally:
                reader.cancel()
        finally:
            s.finished.set()


def event(offset: int, value: bytes = b"v", key: bytes = b"k", **kw: Any) -> pb.Event:
    """An eddy.v1.Event with attempt 1 unless given."""
    kw.setdefault("attempt", 1)
    return pb.Event(offset=offset, key=key, value=value, **kw)


def header(key: str, value: bytes) -> common_pb2.Header:
    return common_pb2.Header(key=key, value=value)
