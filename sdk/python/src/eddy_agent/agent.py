"""Agent: one agent instance connected to a worker."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import Any, Callable, Optional, Union

import grpc

from . import _options
from ._gen.eddy.v1 import agent_pb2_grpc
from ._options import Backoff, OnCommitted, Options
from ._session import MAX_RECV_MESSAGE_BYTES, Session
from ._workers import Workers
from .errors import rejection
from .event import Event

__all__ = ["Agent", "Handler"]

Handler = Callable[[Event], Union[Awaitable[None], None]]
"""A handler: an ``async def`` (or plain) function of one :class:`Event`.

How it ends decides the outcome: returning is OK, raising
:class:`~eddy_agent.DeadLetter` is DEAD_LETTER, raising anything else
(:class:`~eddy_agent.Retry` included) is RETRY."""


class _Log(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"agent {self.extra['agent']}: {msg}", kwargs  # type: ignore[index]


class Agent:
    """One agent instance: connects to every worker of the app, receives the
    partitions the workers give it and runs ``handler`` on their events.

    Most programs use :class:`~eddy_agent.App` and its ``@app.agent``
    decorator, which create Agents; use Agent directly to run one agent in a
    program that manages its own event loop::

        agent = Agent("count", count, app="wordcount", addr="127.0.0.1:6066")
        await agent.run()            # until agent.stop(); reconnects on its own

    Events of one partition are handled one at a time, in offset order;
    events of different partitions concurrently (as asyncio tasks on the
    running loop). A disconnect is not a failure: run() reconnects with
    backoff under the same instance id, and the worker delivers again every
    event whose result it did not get, so handlers must be safe to run more
    than once for the same event (at-least-once).

    All arguments but ``name`` and ``handler`` are keyword-only:

    - ``app``: the app the agent belongs to, the ``app`` of the worker's app
      file; sent in Hello, and a worker of another app refuses the agent
      (:class:`~eddy_agent.WrongAppError`), so an agent given a wrong address
      cannot take another app's partitions. Default: ``$EDDY_APP``; one of
      the two is required.
    - ``addr``: the gRPC address of a worker of the app, ``host:port``, or a
      comma-separated list of them. Any one is enough: the agent asks it for
      the app's workers and opens a session with each (see ``discovery``).
      Default: ``$EDDY_ADDR``, else ``127.0.0.1:6066``.
    - ``discovery``: seconds between two readings of the app's list of
      workers (``LifecycleService/ListWorkers``, the members of its consumer
      group at the addresses they advertise, ``listen.advertise``): workers
      that join get a session, a worker missing from two lists in a row has
      its session stopped gracefully. 0 turns it off: the agent connects to
      exactly the ``addr`` addresses. Until a worker answers the list, the
      agent connects to the ``addr`` addresses and keeps asking. Default 5.
    - ``token``: bearer token, sent as ``authorization: Bearer <token>``
      metadata and in Hello. Default: ``$EDDY_TOKEN``, else none. Without
      ``credentials`` it travels in clear text: fine on loopback only.
    - ``instance_id``: this process's identity towards the worker; it stays
      the same across reconnects so that the worker gives a reconnecting
      instance its partitions back. Default: ``<hostname>-<pid>-<random>``,
      chosen once per process. Set a stable one (a pod name) to stay sticky across
      restarts; it must be unique among the running instances of the agent.
    - ``credit_events``, ``credit_bytes``: the flow-control window, how many
      events and key+value bytes the worker may have delivered and not yet
      finished. Default: 1000 events, 8 MiB. It bounds the SDK's memory.
    - ``concurrency``: bound on handlers running at once across partitions;
      0 (default) means one per assigned partition.
    - ``drain_timeout``: seconds a graceful stop waits for events in
      progress (default 10).
    - ``backoff_min``, ``backoff_max``: reconnection delay bounds in seconds
      (default 0.1 and 5; exponential, +-20% jitter, back to the minimum
      after a session was established).
    - ``on_committed``: ``fn(topic, partition, offset)``, called when the
      worker reports the partition's events below ``offset`` done and
      durable; informational, must return quickly.
    - ``credentials``: ``grpc.ssl_channel_credentials(...)`` for TLS; default
      plaintext.
    - ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``: TLS from PEM
      files instead of ``credentials``: the CA the worker's certificate must
      verify against (default: the system roots), and the client
      certificate and key (both or neither) a worker with
      ``tls.client_ca_file`` requires. Under mutual TLS the certificate's
      subject holds this agent's instance id. Default: none.
    - ``logger``: a ``logging.Logger``; default ``logging.getLogger("eddy_agent")``.

    Invalid values are reported together, as one ``ValueError``.
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        app: Optional[str] = None,
        addr: Optional[str] = None,
        token: Optional[str] = None,
        instance_id: Optional[str] = None,
        credit_events: int = _options.DEFAULT_CREDIT_EVENTS,
        credit_bytes: int = _options.DEFAULT_CREDIT_BYTES,
        concurrency: int = 0,
        drain_timeout: float = _options.DEFAULT_DRAIN_TIMEOUT,
        backoff_min: float = _options.DEFAULT_BACKOFF_MIN,
        backoff_max: float = _options.DEFAULT_BACKOFF_MAX,
        on_committed: Optional[OnCommitted] = None,
        credentials: Optional[grpc.ChannelCredentials] = None,
        tls_ca_file: Optional[str] = None,
        tls_cert_file: Optional[str] = None,
        tls_key_file: Optional[str] = None,
        logger: Optional[logging.Logger] = None,
        discovery: float = _options.DEFAULT_DISCOVERY,
    ) -> None:
        problems: list[str] = []
        credentials = _options.file_credentials(credentials, tls_ca_file, tls_cert_file, tls_key_file, problems)
        if not isinstance(name, str) or not name:
            problems.append("name: empty")
        if not callable(handler):
            problems.append("handler: not callable")
        opts = Options(
            app=app if app is not None else os.environ.get(_options.ENV_APP, ""),
            addr=addr if addr is not None else (os.environ.get(_options.ENV_ADDR) or _options.DEFAULT_ADDR),
            token=token if token is not None else os.environ.get(_options.ENV_TOKEN, ""),
            instance_id=instance_id if instance_id is not None else _options.default_instance_id(),
            credit_events=credit_events,
            credit_bytes=credit_bytes,
            concurrency=concurrency,
            drain_timeout=drain_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            on_committed=on_committed,
            credentials=credentials,
            logger=logger or logging.getLogger("eddy_agent"),
            discovery=discovery,
        )
        problems += opts.problems()
        if problems:
            raise ValueError(f"eddy_agent.Agent({name!r}): " + "; ".join(problems))
        self._name = name
        self._handler = handler
        self._opts = opts
        self._log = _Log(opts.logger, {"agent": name})
        self._started = False
        self._stop_requested = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._sem: Optional[asyncio.Semaphore] = None
        self._sessions: dict[str, str] = {}  # worker address -> live session id

    @property
    def name(self) -> str:
        """The agent name, as declared in the worker's app file."""
        return self._name

    @property
    def handler(self) -> Handler:
        """The handler function."""
        return self._handler

    @property
    def app(self) -> str:
        """The app name sent in Hello."""
        return self._opts.app

    @property
    def addr(self) -> str:
        """The worker address (or comma-separated addresses) given."""
        return self._opts.addr

    @property
    def instance_id(self) -> str:
        """The instance id sent to the worker; it never changes for this Agent."""
        return self._opts.instance_id

    @property
    def connected(self) -> bool:
        """Whether there is a live session with at least one worker (for readiness probes)."""
        return bool(self._sessions)

    @property
    def sessions(self) -> dict[str, str]:
        """The live sessions: worker address (as dialled) to the worker's session id (a copy)."""
        return dict(self._sessions)

    @property
    def session_id(self) -> str:
        """The worker's id of a current session (as in ``workerctl agents``), or ``""``;
        with sessions at several workers, the one at the lowest address."""
        return self._sessions[min(self._sessions)] if self._sessions else ""

    def stop(self) -> None:
        """Start a graceful stop; :meth:`run` returns once it is done.

        It takes no new work (events not yet started are dropped; the worker
        delivers them again), waits for events in progress up to
        ``drain_timeout`` and sends their results, closes its side of the
        stream and waits, up to 5s, for the worker to end the session. Safe
        to call from any thread, before or during run(), more than once.
        """
        self._stop_requested = True
        loop, ev = self._loop, self._stop
        if loop is None or ev is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            ev.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)

    async def run(self) -> None:
        """Connect to every worker of the app and process events until
        :meth:`stop` is called.

        Each worker (see ``discovery``) gets a session of its own, under the
        same instance id, reconnected with exponential backoff whenever the
        connection or the session is lost. Returns after a graceful stop of
        every session. Raises a :class:`~eddy_agent.RejectedError` subclass,
        without reconnecting, when a worker refuses the agent for a reason
        reconnecting cannot fix (unknown agent, bad token, unsupported
        protocol version, protocol violation, no agent support), once the
        sessions with the other workers stopped gracefully. Cancelling the
        task running it stops at once, without draining.

        May be called once; a second call raises ``RuntimeError``.
        """
        if self._started:
            raise RuntimeError("Agent.run called more than once; create another Agent to run again")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        if self._opts.concurrency > 0:
            self._sem = asyncio.Semaphore(self._opts.concurrency)
        self._log.info("starting (workers %s, instance %s)", self._opts.addr, self.instance_id)
        await Workers(self).run()
        self._log.info("stopped")

    async def _run_link(self, addr: str, stop: asyncio.Event) -> Optional[BaseException]:
        """The sessions with the worker at addr, reconnected until ``stop``
        is set (None) or the worker rejects the agent (the RejectedError)."""
        log = self._log
        bo = Backoff(self._opts.backoff_min, self._opts.backoff_max)
        while True:
            if stop.is_set():
                return None
            established, err = await self._connect_once(addr, stop)
            if stop.is_set():
                return None  # a stop wins over what the worker said meanwhile
            rej = rejection(self._name, addr, err)
            if rej is not None:
                log.error("%s; not reconnecting", rej)
                return rej
            if established:
                bo.reset()
            delay = bo.next()
            log.warning("not connected to the worker at %s (%s); reconnecting in %.2fs", addr, _why(err), delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                continue
            return None

    def _channel(self, addr: str) -> grpc.aio.Channel:
        """A fresh channel to addr (a new connection)."""
        options = [
            ("grpc.max_receive_message_length", MAX_RECV_MESSAGE_BYTES),
            # Pings find a worker that vanished without closing the
            # connection. 30s is above the worker's keepalive enforcement
            # minimum (10s), which would otherwise end the connection.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            # Keep pinging on a quiet stream (gRPC core stops after 2 pings
            # without data otherwise).
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.enable_retries", 0),
        ]
        creds = self._opts.credentials
        if creds is not None:
            return grpc.aio.secure_channel(addr, creds, options=options)
        return grpc.aio.insecure_channel(addr, options=options)

    async def _connect_once(self, addr: str, stop: asyncio.Event) -> tuple[bool, Optional[BaseException]]:
        """One session on a fresh channel (a new connection: the reconnection
        backoff is then ours alone, and a session never inherits a
        half-broken transport)."""
        try:
            channel = self._channel(addr)
        except Exception as e:
            return False, e
        try:
            stub = agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
            return await Session(self, addr).run(stub, stop)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            self._log.error("the session failed", exc_info=True)
            return False, e
        finally:
            await channel.close(None)


def _why(err: Optional[BaseException]) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    if err is None:
        return "no error"
    return str(err) or type(err).__name__
