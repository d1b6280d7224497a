"""One session with the worker (one Connect stream), and its partitions.

The structure follows the Go SDK (client/agent/session.go, partition.go), with
asyncio tasks for goroutines. Everything runs on one event loop, so the
bookkeeping needs no locks: a message is queued for sending synchronously, and
a single writer task sends the queue in order. That keeps the protocol's
ordering rules simple: results go before the credit they return and before
the RevokeAck that follows them, and nothing is queued for a partition after
it is abandoned.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
import types
from typing import TYPE_CHECKING, Any, Optional, Union

import grpc

from ._gen.eddy.v1 import agent_pb2 as pb
from .errors import DeadLetter, Retry, Status, error_text, status_of
from .event import Event, _ns_of

if TYPE_CHECKING:
    from .agent import Agent

PROTOCOL_VERSION = 1
# At most this many results in one Results message.
MAX_RESULTS_PER_MESSAGE = 500
# A partition's results are sent at least this often (seconds) while it has
# any: the worker's processing_timeout counts from a partition's previous
# results, so a slow handler with a deep queue must not look hung
# (docs/protocol.md, "Events and results"). Results arriving faster are still
# batched: about one message per interval, besides the count and empty-queue
# flushes.
RESULTS_FLUSH_INTERVAL = 0.1
# A Results message is split at this size, well under gRPC's 4 MiB default.
RESULTS_BUDGET_BYTES = 1 << 20
# The worker's limit when Welcome gives none: gRPC's default.
DEFAULT_MAX_MESSAGE_BYTES = 4 << 20
# What the SDK accepts from the worker; the worker keeps batches far below.
MAX_RECV_MESSAGE_BYTES = 16 << 20
# Bound on the wait for Welcome.
HANDSHAKE_TIMEOUT = 30.0
# Bound on the wait for the worker to end the stream after a graceful stop
# closed the agent's side.
CLOSE_TIMEOUT = 5.0

_STATUS = {
    Status.OK: pb.RESULT_STATUS_OK,
    Status.RETRY: pb.RESULT_STATUS_RETRY,
    Status.DEAD_LETTER: pb.RESULT_STATUS_DEAD_LETTER,
}

_CLOSE = object()  # queued by a graceful stop: half-close after what is queued



class WorkerEndedError(ConnectionError):
    """The worker ended the session without an error status (not permanent)."""

    def __init__(self) -> None:
        super().__init__("the worker ended the session")


class ProtocolError(ConnectionError):
    """The worker sent something the protocol does not allow (not permanent)."""


class HandshakeTimeoutError(TimeoutError):
    pass


TopicPartition = tuple[str, int]


class Session:
    """One Connect stream: handshake, dispatch, credit, results, stop."""

    def __init__(self, agent: Agent, addr: str) -> None:
        self.a = agent
        self.addr = addr  # the worker's
        self.o = agent._opts
        self.log = agent._log
        self.loop = asyncio.get_running_loop()
        self.sem: Optional[asyncio.Semaphore] = agent._sem
        self.call: Any = None
        self.id = ""
        self.max_result_bytes = DEFAULT_MAX_MESSAGE_BYTES - 1024
        self.budget_bytes = RESULTS_BUDGET_BYTES

        self.parts: dict[TopicPartition, Partition] = {}  # latest per topic-partition
        self.all_parts: list[Partition] = []  # every partition object of the session
        self.tasks: set[asyncio.Task[Any]] = set()  # partition and revoke tasks
        self.stopping = False  # take no new partitions
        self.ended = False
        self.closing = asyncio.Event()  # set when the session ends: waits stop

        self.outq: collections.deque[Any] = collections.deque()
        self.out_wake = asyncio.Event()
        self.out_idle = asyncio.Event()  # the writer has written everything queued, or stopped
        self.send_closed = False
        self.writer: Optional[asyncio.Task[None]] = None
        self.call_cancelled = False

        # Credit: events held (received, not finished), finished events whose
        # credit is not yet returned, and credit in use as the worker sees it.
        self.held = 0
        self.done_events = 0
        self.done_bytes = 0
        self.out_events = 0
        self.out_bytes = 0
        self.overshot_logged = False

    # ---- the session as a whole ---------------------------------------

    async def run(self, stub: Any, stop: asyncio.Event) -> tuple[bool, Optional[BaseException]]:
        """Say Hello, wait for Welcome and serve until the stream ends.

        Returns whether the worker welcomed the agent, and why the session
        ended: None after a graceful stop (``stop`` was set), else the error
        as received (a grpc.aio.AioRpcError when the worker ended the stream
        with a status), for the caller to classify.
        """
        token = self.o.token
        md = (("authorization", f"Bearer {token}"),) if token else None
        self.call = stub.Connect(metadata=md)
        try:
            return await self._run(stop)
        finally:
            self._kill()

    async def _run(self, stop: asyncio.Event) -> tuple[bool, Optional[BaseException]]:
        o = self.o
        hello = pb.ConnectRequest(
            hello=pb.Hello(
                app=o.app,
                agent=self.a.name,
                instance_id=o.instance_id,
                protocol_version=PROTOCOL_VERSION,
                credit=pb.Credit(events=o.credit_events, bytes=o.credit_bytes),
                token=o.token,
            )
        )
        # The write waits for the connection: race it against a stop and
        # bound it like the wait for Welcome.
        write = asyncio.ensure_future(self.call.write(hello))
        wait_stop = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({write, wait_stop}, timeout=HANDSHAKE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wait_stop.cancel()
        if not write.done():
            write.cancel()
            if stop.is_set():
                return False, None
            return False, HandshakeTimeoutError(f"could not send Hello to the worker within {HANDSHAKE_TIMEOUT:g}s")
        err = None if write.cancelled() else write.exception()
        if isinstance(err, grpc.aio.AioRpcError):
            return False, err
        if err is not None or write.cancelled():  # the RPC is over; its status says why
            return False, await self._status_or(err or ConnectionError("sending Hello failed"))

        self.writer = self._spawn(self._write_loop(), track=False)
        welcomed = asyncio.Event()
        recv = self._spawn(self._receive(welcomed), track=False)
        wait_welcome = asyncio.ensure_future(welcomed.wait())
        wait_stop = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {recv, wait_welcome, wait_stop}, timeout=HANDSHAKE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wait_welcome.cancel()
            wait_stop.cancel()
        if recv.done():
            await self._abort()
            return welcomed.is_set(), recv.result()
        if not welcomed.is_set():
            await self._abort()
            if stop.is_set():
                return False, None
            return False, HandshakeTimeoutError(f"no Welcome from the worker within {HANDSHAKE_TIMEOUT:g}s")

        a = self.a
        a._sessions[self.addr] = self.id
        try:
            wait_stop = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({recv, wait_stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wait_stop.cancel()
            if recv.done():
                err = recv.result()
                await self._abort()
                self.log.info("session %s with the worker ended: %s", self.id, err)
                return True, err
            await self._drain(recv)
            return True, None
        finally:
            a._sessions.pop(self.addr, None)

    async def _status_or(self, err: BaseException) -> BaseException:
        """The RPC's error status after a failed write, else ``err``."""
        try:
            await asyncio.wait_for(self.call.read(), 5)
        except grpc.aio.AioRpcError as e:
            return e
        except Exception:
            pass
        return err

    async def _receive(self, welcomed: asyncio.Event) -> BaseException:
        """Read the stream until it ends: Welcome first, then anything.

        Returns why the stream ended; never raises but for cancellation.
        """
        try:
            first = await self.call.read()
            if first is grpc.aio.EOF:  # type: ignore[attr-defined]
                return WorkerEndedError()
            kind = first.WhichOneof("msg")
            if kind != "welcome":
                return ProtocolError(f"protocol: the worker's first message is {kind}, want welcome")
            self._welcome(first.welcome)
            welcomed.set()
            while True:
                m = await self.call.read()
                if m is grpc.aio.EOF:  # type: ignore[attr-defined]
                    return WorkerEndedError()
                self._dispatch(m)
        except grpc.aio.AioRpcError as e:
            return e
        except asyncio.CancelledError:
            if self.call_cancelled:
                return ConnectionError("the stream was cancelled")
            raise
        except Exception as e:  # a bug in the SDK: end the session, reconnect
            self.log.error("receiving from the worker failed; ending the session", exc_info=True)
            return e

    def _welcome(self, w: pb.Welcome) -> None:
        self.id = w.session_id
        limit = w.limits.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
        # Room for the Results envelope around a single result.
        self.max_result_bytes = max(limit - 1024, limit // 2)
        self.budget_bytes = min(RESULTS_BUDGET_BYTES, limit // 2)
        self.log.info(
            "connected to the worker at %s: session %s (max_message_bytes=%d, max_retries=%d)",
            self.addr,
            self.id,
            w.limits.max_message_bytes,
            w.limits.max_retries,
        )

    def _dispatch(self, m: pb.ConnectResponse) -> None:
        kind = m.WhichOneof("msg")
        if kind == "event_batch":
            self._events(m.event_batch)
        elif kind == "assign":
            self._assign(m.assign)
        elif kind == "revoke":
            self._revoke(m.revoke)
        elif kind == "committed":
            self._committed(m.committed)
        elif kind == "state_reply":
            # StateGet is not sent by this version of the SDK.
            self.log.debug("ignoring a StateReply nobody asked for (request %d)", m.state_reply.request_id)
        elif kind == "welcome":
            self.log.warning("ignoring a second Welcome from the worker (session %s)", self.id)
        else:
            # A newer worker may send messages this SDK does not know.
            self.log.debug("ignoring an unknown message from the worker")

    # ---- assignments ---------------------------------------------------

    def _assign(self, m: pb.Assign) -> None:
        key = (m.topic, m.partition)
        epoch = m.epoch
        if self.stopping:
            self.log.debug("ignoring Assign of %s/%d epoch %d: stopping", m.topic, m.partition, epoch)
            return
        old = self.parts.get(key)
        if old is not None and epoch < old.epoch:
            self.log.warning(
                "ignoring Assign of %s/%d epoch %d older than the current epoch %d",
                m.topic,
                m.partition,
                epoch,
                old.epoch,
            )
            return
        if old is not None and epoch == old.epoch:
            self.log.debug("duplicate Assign of %s/%d epoch %d; acknowledging again", m.topic, m.partition, epoch)
            self._ack_assign(m)
            return
        dropped = (0, 0)
        if old is not None:
            # A newer epoch without a Revoke first: the old assignment is
            # over. Its event in progress may finish; the new one waits.
            dropped = old.halt()
        p = Partition(self, key, epoch, old)
        self.parts[key] = p
        self.all_parts.append(p)
        p.task = self._spawn(p.run())
        if old is not None:
            self._spawn(self._finish_superseded(old))
        self._finished(*dropped)
        self._ack_assign(m)
        self.log.info("partition %s/%d assigned (epoch %d)", m.topic, m.partition, epoch)

    async def _finish_superseded(self, old: Partition) -> None:
        # Bound the old assignment's event in progress as a Revoke would.
        if not await old.finish(self.loop.time() + self.o.drain_timeout, self.closing):
            old.abandon()

    def _ack_assign(self, m: pb.Assign) -> None:
        self._send(pb.ConnectRequest(assign_ack=pb.AssignAck(topic=m.topic, partition=m.partition, epoch=m.epoch)))

    def _revoke(self, m: pb.Revoke) -> None:
        key = (m.topic, m.partition)
        if m.HasField("deadline"):
            wall = m.deadline.seconds + m.deadline.nanos / 1e9
            deadline = self.loop.time() + (wall - time.time())
        else:
            deadline = self.loop.time() + self.o.drain_timeout
        p = self.parts.get(key)
        if p is None or p.epoch > m.epoch or self.ended:
            # Nothing held for that epoch (never assigned, already revoked,
            # or superseded): acknowledging is all there is to do.
            self.log.debug("Revoke of %s/%d epoch %d for no current work; acknowledging", m.topic, m.partition, m.epoch)
            self._ack_revoke(m)
            return
        n, nbytes = p.halt()
        self._finished(n, nbytes)
        self.log.info(
            "partition %s/%d revoked (epoch %d): %d queued events dropped, %.1fs to finish",
            m.topic,
            m.partition,
            m.epoch,
            n,
            deadline - self.loop.time(),
        )
        self._spawn(self._revoke_wait(p, m, deadline))

    async def _revoke_wait(self, p: Partition, m: pb.Revoke, deadline: float) -> None:
        if not await p.finish(deadline, self.closing):
            p.abandon()
            self.log.warning(
                "the event in progress on %s/%d did not finish before the revoke deadline; its result is not sent",
                m.topic,
                m.partition,
            )
        self._ack_revoke(m)
        if self.parts.get(p.key) is p:
            del self.parts[p.key]

    def _ack_revoke(self, m: pb.Revoke) -> None:
        self._send(pb.ConnectRequest(revoke_ack=pb.RevokeAck(topic=m.topic, partition=m.partition, epoch=m.epoch)))

    # ---- events and credit ---------------------------------------------

    def _events(self, b: pb.EventBatch) -> None:
        evs = b.events
        sizes = [len(e.key) + len(e.value) for e in evs]
        n, nbytes = len(sizes), sum(sizes)
        self._received(n, nbytes)
        p = self.parts.get((b.topic, b.partition))
        if p is None or p.epoch != b.epoch or not p.enqueue(evs, sizes):
            # Events of a partition not (or no longer) assigned under that
            # epoch: the worker delivers them again to the owner. Their
            # credit comes back all the same.
            self.log.debug(
                "dropping %d events of %s/%d epoch %d: not assigned under that epoch",
                n,
                b.topic,
                b.partition,
                b.epoch,
            )
            self._finished(n, nbytes)

    def _committed(self, c: pb.Committed) -> None:
        fn = self.o.on_committed
        if fn is None:
            return
        try:
            fn(c.topic, c.partition, c.offset)
        except Exception:
            self.log.error("the on_committed callback raised", exc_info=True)

    def _received(self, n: int, nbytes: int) -> None:
        self.held += n
        self.out_events += n
        self.out_bytes += nbytes
        if not self.overshot_logged and (
            self.out_events > self.o.credit_events
            # One event larger than the byte credit is allowed when nothing else is held.
            or (self.out_bytes > self.o.credit_bytes and not (n == 1 and self.held == 1))
        ):
            self.overshot_logged = True
            self.log.warning(
                "the worker sent more than the credit allows (reported once per session): "
                "%d events of %d, %d bytes of %d",
                self.out_events,
                self.o.credit_events,
                self.out_bytes,
                self.o.credit_bytes,
            )

    def _finished(self, n: int, nbytes: int) -> None:
        """Account for events no longer held (results sent, or dropped).

        Credit goes back once half of either window is done, or when nothing
        is held any more (so a remainder is not kept back when the stream
        goes quiet, and events larger than half the byte window cannot wedge
        the worker).
        """
        if n == 0 and nbytes == 0:
            return
        self.held -= n
        self.done_events += n
        self.done_bytes += nbytes
        if (
            self.done_events * 2 < self.o.credit_events
            and self.done_bytes * 2 < self.o.credit_bytes
            and self.held > 0
        ):
            return
        credit = pb.Credit(events=self.done_events, bytes=self.done_bytes)
        self.out_events -= self.done_events
        self.out_bytes -= self.done_bytes
        self.done_events = self.done_bytes = 0
        if self.stopping:
            return  # more events would only be dropped
        self._send(pb.ConnectRequest(credit=credit))

    # ---- sending -------------------------------------------------------

    def _send(self, msg: Any) -> bool:
        """Queue ``msg`` for the writer; False once the session stopped sending."""
        if self.send_closed:
            return False
        self.outq.append(msg)
        self.out_idle.clear()
        self.out_wake.set()
        return True

    async def _written(self) -> None:
        """Wait until the writer has written everything queued so far, or
        stopped."""
        await self.out_idle.wait()

    async def _write_loop(self) -> None:
        call = self.call
        q = self.outq
        try:
            while True:
                if not q:
                    self.out_idle.set()
                    self.out_wake.clear()
                    await self.out_wake.wait()
                    continue
                msg = q.popleft()
                if msg is _CLOSE:
                    await call.done_writing()
                    return
                await call.write(msg)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The stream is gone; the receive task reports why.
            self.log.debug("sending to the worker failed; the session is ending: %r", e)
            self.send_closed = True
            q.clear()
        finally:
            self.out_idle.set()

    # ---- ending --------------------------------------------------------

    def _spawn(self, coro: Any, track: bool = True) -> asyncio.Task[Any]:
        t = self.loop.create_task(coro)
        if track:
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        return t

    def _stop_all(self) -> list[Partition]:
        """Take no new partitions; halt every partition, dropping queued events."""
        self.stopping = True
        parts = list(self.parts.values())
        for p in parts:
            p.halt()
        return parts

    async def _drain(self, recv: asyncio.Task[BaseException]) -> None:
        """The graceful stop of a live session (see Agent.run)."""
        parts = self._stop_all()
        self.log.info(
            "stopping: finishing events in progress (session %s, %d partitions, drain timeout %gs)",
            self.id,
            len(parts),
            self.o.drain_timeout,
        )
        deadline = self.loop.time() + self.o.drain_timeout
        for p in parts:
            if not await p.finish(deadline, None):
                p.abandon()
                self.log.warning(
                    "events still in progress on %s/%d at the drain timeout; their results are not sent",
                    p.key[0],
                    p.key[1],
                )
        # Half-close after everything queued: the worker sees the end of the
        # agent's messages and ends the session.
        close_by = self.loop.time() + CLOSE_TIMEOUT
        self._send(_CLOSE)
        self.send_closed = True
        assert self.writer is not None
        done, _ = await asyncio.wait({self.writer}, timeout=CLOSE_TIMEOUT)
        if not done:
            self.log.warning("could not close the stream within %gs; closing", CLOSE_TIMEOUT)
            self._cancel_call()
        else:
            done2, _ = await asyncio.wait({recv}, timeout=max(0.0, close_by - self.loop.time()))
            if done2:
                self.log.debug("the worker ended the session: %s", recv.result())
            else:
                self.log.warning("the worker did not end the session within %gs; closing", CLOSE_TIMEOUT)
                self._cancel_call()
        await asyncio.wait({recv}, timeout=1.0)
        # Handlers had their time: wait only for what is left of it.
        await self._end(max(0.0, deadline - self.loop.time()))
        self.log.info("session %s closed", self.id)

    async def _abort(self) -> None:
        """End a session whose stream is gone (or never was): drop everything.

        Nothing can be sent; every partition is dropped (the worker reassigns
        them with new epochs) and handlers in progress are cancelled.
        """
        self.send_closed = True
        self.outq.clear()
        self._cancel_call()
        if self.writer is not None:
            self.writer.cancel()
        for p in self._stop_all():
            p.abandon()
        await self._end(self.o.drain_timeout)

    async def _end(self, wait: float) -> None:
        """Cancel every handler, then wait for the tasks, up to ``wait``."""
        if self.ended:
            return
        self.ended = True
        self.stopping = True
        self.closing.set()
        for p in self.all_parts:
            p.cancel()
        pending = {t for t in self.tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=wait)
        if pending:
            self.log.warning(
                "%d handlers still running after the session ended; they ignore cancellation", len(pending)
            )

    def _cancel_call(self) -> None:
        if not self.call_cancelled:
            self.call_cancelled = True
            if self.call is not None:
                self.call.cancel()

    def _kill(self) -> None:
        """Synchronous last resort (also when run itself is cancelled)."""
        self.send_closed = True
        self.stopping = True
        self.ended = True
        self.closing.set()
        self.outq.clear()
        self._cancel_call()
        if self.writer is not None:
            self.writer.cancel()
        for p in self.all_parts:
            p.halt()
            p.abandoned = True
            p.cancel()
        for t in list(self.tasks):
            t.cancel()


class Partition:
    """The events of one assigned topic-partition under one epoch.

    One task (run) processes them one at a time, in offset order.
    """

    def __init__(self, s: Session, key: TopicPartition, epoch: int, prev: Optional[Partition]) -> None:
        self.s = s
        self.key = key
        self.epoch = epoch
        self.prev = prev  # earlier assignment of the same partition, still finishing
        self.queue: collections.deque[tuple[pb.Event, int, int]] = collections.deque()  # (event, bytes, batch)
        self.batch_seq = 0  # batches enqueued so far
        # State overlay: the worker delivers a key's queued events together
        # in one batch, each with the state the key had before the batch.
        # An event must see the state changes of the earlier OK events of
        # its key in the same batch: key -> table -> value (None: deleted)
        # for plain tables, key -> (table, window start in ns) -> value for
        # windowed ones. Dropped when the next batch starts (it brings fresh
        # state).
        self.overlay_batch = 0
        self.overlay: dict[bytes, dict[Union[str, tuple[str, int]], Optional[bytes]]] = {}
        self.stopped = False
        self.abandoned = False  # results are no longer sent
        self.cancel_requested = False
        self.wake = asyncio.Event()
        self.done = asyncio.Event()
        self.task: Optional[asyncio.Task[None]] = None
        self.stop_waiter: Optional[asyncio.Future[None]] = None
        # Results not yet queued for sending: Results messages built in
        # place (no copies), split at the size budget; the last one is open.
        self.msgs: list[pb.ConnectRequest] = []
        self.open: Optional[Any] = None  # the open message's Results
        self.open_size = 0
        self.pending = 0  # results in msgs
        self.pending_bytes = 0  # their events' key+value bytes
        self.flush_at = 0.0  # loop time by which the pending results are due
        self.flush_timer: Optional[asyncio.TimerHandle] = None  # flushes at flush_at

    def enqueue(self, evs: Any, sizes: list[int]) -> bool:
        """Add events to the queue; False if the partition is halted."""
        if self.stopped:
            return False
        self.batch_seq += 1
        batch = self.batch_seq
        self.queue.extend((e, size, batch) for e, size in zip(evs, sizes))
        self.wake.set()
        return True

    def halt(self) -> tuple[int, int]:
        """Start no more events; drop the queued ones and return how many (and
        their key+value bytes). The event in progress, if any, finishes and
        its result is sent. Idempotent."""
        if self.stopped:
            return 0, 0
        self.stopped = True
        n = len(self.queue)
        nbytes = sum(q[1] for q in self.queue)
        self.queue.clear()
        self.wake.set()
        if self.stop_waiter is not None and not self.stop_waiter.done():
            self.stop_waiter.set_result(None)
        return n, nbytes

    def abandon(self) -> None:
        """Halt, cancel the handler and send no more results: nobody will use them."""
        self.halt()
        self.abandoned = True
        self.cancel()

    def cancel(self) -> None:
        """Cancel the handler in progress (it gets asyncio.CancelledError) and
        stop the partition's task."""
        if self.task is not None and not self.task.done():
            self.cancel_requested = True
            self.task.cancel()

    async def finish(self, deadline: float, closing: Optional[asyncio.Event]) -> bool:
        """Wait until the halted partition's task has queued its last results,
        or until ``deadline`` (loop time), or until ``closing`` is set. The
        handler is cancelled shortly before the deadline, so that a handler
        that lets the cancellation through ends in time for its result (RETRY)
        to be sent. False if the task did not finish; the caller then
        abandons the partition."""
        if self.done.is_set():
            return True
        loop = self.s.loop
        remaining = max(0.0, deadline - loop.time())
        margin = min(remaining / 10, 1.0)
        timer = loop.call_later(remaining - margin, self.cancel)
        waiters = [asyncio.ensure_future(self.done.wait())]
        if closing is not None:
            waiters.append(asyncio.ensure_future(closing.wait()))
        try:
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            for w in waiters:
                w.cancel()
        return self.done.is_set()

    async def run(self) -> None:
        s = self.s
        loop = s.loop
        sem = s.sem
        size = 0
        try:
            if self.prev is not None:
                # Keep the partition's events strictly one at a time across
                # assignments: the previous one's event in progress ends first.
                await self.prev.done.wait()
                self.prev = None
            while not self.cancel_requested and not self.stopped:
                if not self.queue:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                pe, size, batch = self.queue.popleft()
                if batch != self.overlay_batch:
                    self.overlay_batch = batch
                    self.overlay.clear()
                if sem is not None and not await self._acquire(sem):
                    # Halted before the event started: dropped like the
                    # queued ones.
                    s._finished(1, size)
                    break
                try:
                    await self._process(pe)
                finally:
                    if sem is not None:
                        sem.release()
                self.pending += 1
                self.pending_bytes += size
                if self.pending == 1:
                    # However long the next events take, or wait for a
                    # concurrency slot, the results go within the interval.
                    self.flush_at = loop.time() + RESULTS_FLUSH_INTERVAL
                    self.flush_timer = loop.call_at(self.flush_at, self._flush)
                if self.pending >= MAX_RESULTS_PER_MESSAGE or not self.queue:
                    self._flush()
                elif loop.time() >= self.flush_at:
                    # Due, and the timer could not fire: the handlers do not
                    # let the event loop run (a plain def, or an async def
                    # that never awaits). Let the writer send the results.
                    self._flush()
                    await s._written()
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise
        finally:
            self._flush()
            self.done.set()

    async def _acquire(self, sem: asyncio.Semaphore) -> bool:
        """Take a concurrency slot; False if the partition was halted first."""
        if not sem.locked():
            await sem.acquire()
        else:
            self.stop_waiter = stop_waiter = self.s.loop.create_future()
            acq = asyncio.ensure_future(sem.acquire())
            try:
                await asyncio.wait({acq, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                if acq.done() and not acq.cancelled():
                    sem.release()
                else:
                    acq.cancel()
                raise
            finally:
                self.stop_waiter = None
            if not acq.done():
                acq.cancel()
                return False
        if self.stopped:
            sem.release()
            return False
        return True

    def _late(self, what: str, ev: Event) -> None:
        self.s.log.warning(
            "%s called after the handler returned; ignored (%s/%d offset %d)", what, ev.topic, ev.partition, ev.offset
        )

    async def _process(self, pe: pb.Event) -> None:
        """Run the handler on one event and add its result to the pending ones."""
        s = self.s
        topic, partition = self.key
        ev = Event._from_proto(topic, partition, pe)
        ev._on_late = self._late
        if self.overlay:
            seen = self.overlay.get(ev.key)
            if seen:
                ev._apply_overlay(seen)
        err: Optional[BaseException] = None
        try:
            r = s.a._handler(ev)
            if r is not None and (type(r) is types.CoroutineType or inspect.isawaitable(r)):
                await r
        except asyncio.CancelledError:
            if not self.cancel_requested:
                ev._closed = True
                raise
            err = Retry("cancelled: the result can no longer be used (revoke deadline, lost session or drain timeout)")
        except (Retry, DeadLetter) as e:
            err = e
        except Exception as e:
            err = e
            s.log.error(
                "the handler raised on %s/%d offset %d; the event will be retried",
                topic,
                partition,
                pe.offset,
                exc_info=True,
            )
        ev._closed = True

        res = self._add_result()
        res.offset = pe.offset
        if err is None:
            res.status = pb.RESULT_STATUS_OK
            add_record = res.produced.add
            for rec in ev._produced:
                out = add_record(topic=rec.topic, key=rec.key, value=rec.value)
                if rec.timestamp is not None:
                    sec, nanos = divmod(_ns_of("timestamp", rec.timestamp), 1_000_000_000)
                    out.timestamp.seconds, out.timestamp.nanos = sec, nanos
                if rec.headers:
                    add_header = out.headers.add
                    for hk, hv in rec.headers:
                        add_header(key=hk, value=hv)
            if ev._mutations:
                add_mutation = res.mutations.add
                for m in ev._mutations:
                    if m.value is None:
                        pm = add_mutation(table=m.table, key=m.key, delete=True)
                    else:
                        pm = add_mutation(table=m.table, key=m.key, value=m.value)
                    if m.window_start is not None:
                        sec, nanos = divmod(_ns_of("window start", m.window_start), 1_000_000_000)
                        pm.window_start.seconds, pm.window_start.nanos = sec, nanos
        else:
            st = status_of(err)
            res.status = _STATUS[st]
            res.error = error_text(err)
            s.log.debug("event %s/%d offset %d: %s: %s", topic, partition, pe.offset, st, res.error)
        size = res.ByteSize()
        if size > s.max_result_bytes:
            s.log.error(
                "result of %s/%d offset %d too large for one message to the worker (%d bytes, max %d); "
                "the event will be retried",
                topic,
                partition,
                pe.offset,
                size,
                s.max_result_bytes,
            )
            res.Clear()
            res.offset = pe.offset
            res.status = pb.RESULT_STATUS_RETRY
            res.error = (
                f"result of {size} bytes exceeds the {s.max_result_bytes} bytes one message to the worker "
                "may carry; emit fewer or smaller records"
            )
            size = res.ByteSize()
        elif err is None and ev._mutations:
            # Applied by the worker: later events of the key in this batch see them.
            seen = self.overlay.setdefault(ev.key, {})
            for m in ev._mutations:
                if m.window_start is None:
                    seen[m.table] = m.value
                else:
                    seen[(m.table, _ns_of("window start", m.window_start))] = m.value
        self._sized(size + 8)  # field tag and length prefix

    def _add_result(self) -> Any:
        """A new, empty result at the end of the open Results message."""
        if self.open is None:
            req = pb.ConnectRequest()
            rs = req.results
            rs.topic, rs.partition, rs.epoch = self.key[0], self.key[1], self.epoch
            self.msgs.append(req)
            self.open, self.open_size = rs, 0
        return self.open.results.add()

    def _sized(self, size: int) -> None:
        """Account for the size of the result just added; move it to a new
        message if it takes the open one over the budget."""
        rs = self.open
        assert rs is not None
        self.open_size += size
        if self.open_size > self.s.budget_bytes and len(rs.results) > 1:
            last = pb.Result()
            last.CopyFrom(rs.results[-1])
            del rs.results[-1]
            self.open = None
            self._add_result().CopyFrom(last)
            self.open_size = size

    def _flush(self) -> None:
        """Queue the pending results, unless abandoned, and return their credit.

        Called by run and by flush_timer; everything runs on the event loop,
        and run adds a result and counts it without awaiting in between."""
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if not self.pending:
            return
        msgs, n, nbytes = self.msgs, self.pending, self.pending_bytes
        self.msgs, self.open, self.open_size, self.pending, self.pending_bytes = [], None, 0, 0, 0
        if not self.abandoned:
            for m in msgs:
                self.s._send(m)
        self.s._finished(n, nbytes)
