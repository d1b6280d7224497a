"""App: a process's agents, declared with a decorator, run with main()."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any, Callable, Optional, TypeVar

import grpc

from . import _options
from ._options import OnCommitted
from .agent import Agent, Handler
from .errors import RejectedError

__all__ = ["App"]

F = TypeVar("F", bound=Handler)


class App:
    """The agents of one process, Faust style::

        from eddy_agent import App, Event

        app = App(app="wordcount")       # the app file's app (default $EDDY_APP); worker at $EDDY_ADDR

        @app.agent("count")              # an agent declared in the worker's app file
        async def count(event: Event) -> None:
            for word in event.value.decode().split():
                event.emit("words", key=word, value=b"1")

        if __name__ == "__main__":
            app.main()                   # runs every agent; SIGINT/SIGTERM stop gracefully

    The keyword arguments are the defaults of every agent of the app; see
    :class:`~eddy_agent.Agent` for what they mean. ``addr`` may also be given
    positionally. All agents of the process share one instance id (the
    process's default, ``<hostname>-<pid>-<random>``, unless ``instance_id``
    is given): instance ids only need to be unique among the instances of
    one agent.
    """

    def __init__(
        self,
        addr: Optional[str] = None,
        *,
        app: Optional[str] = None,
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
        self._defaults: dict[str, Any] = dict(
            app=app,
            addr=addr,
            token=token,
            instance_id=instance_id if instance_id is not None else _options.default_instance_id(),
            credit_events=credit_events,
            credit_bytes=credit_bytes,
            concurrency=concurrency,
            drain_timeout=drain_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            on_committed=on_committed,
            credentials=credentials,
            tls_ca_file=tls_ca_file,
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            logger=logger,
            discovery=discovery,
        )
        # Check the defaults now, not at the first decorator.
        Agent("app", lambda ev: None, **self._defaults)
        self._agents: dict[str, Agent] = {}
        self._stop_requested = False

    @property
    def agents(self) -> dict[str, Agent]:
        """The app's agents by name (a copy)."""
        return dict(self._agents)

    @property
    def instance_id(self) -> str:
        """The instance id the app's agents send (unless overridden per agent)."""
        return str(self._defaults["instance_id"])

    def agent(self, name: Optional[str] = None, **options: Any) -> Callable[[F], F]:
        """Decorator: run the function as the agent ``name`` of the worker's app file.

        ``name`` defaults to the function's name. ``options`` override the
        app's defaults for this agent (``concurrency=4``, ``credit_events=100``,
        ...; see :class:`~eddy_agent.Agent`). The function is returned
        unchanged, so it can still be called directly in tests; the
        :class:`~eddy_agent.Agent` is in :attr:`agents`.
        """

        def register(fn: F) -> F:
            agent_name = name if name is not None else getattr(fn, "__name__", "")
            if agent_name in self._agents:
                raise ValueError(f"agent {agent_name!r} is already registered in this app")
            self._agents[agent_name] = Agent(agent_name, fn, **{**self._defaults, **options})
            return fn

        return register

    def stop(self) -> None:
        """Stop every agent gracefully; :meth:`run` returns once they are done."""
        self._stop_requested = True
        for a in self._agents.values():
            a.stop()

    async def run(self) -> None:
        """Run every agent until :meth:`stop`; see :meth:`Agent.run`.

        If the worker rejects one of them (a :class:`~eddy_agent.RejectedError`),
        the others are stopped gracefully and the error is raised.
        """
        if not self._agents:
            raise RuntimeError("the app has no agents: decorate a handler with @app.agent(NAME)")
        tasks = {asyncio.ensure_future(a.run()): a for a in self._agents.values()}
        if self._stop_requested:
            self.stop()
        first: Optional[BaseException] = None
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    exc = t.exception()
                    if exc is not None and first is None:
                        first = exc
                        for a in self._agents.values():
                            a.stop()
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if first is not None:
            raise first

    def main(self, *, log_level: Optional[str] = None) -> None:
        """Run the app as the program: logging, signals, exit status.

        Configures logging (``log_level``, else ``$EDDY_LOG_LEVEL``, else
        INFO) unless the program already did, runs every agent, and stops
        them gracefully on the first SIGINT or SIGTERM; a second one exits at
        once. Returns after a graceful stop. When the worker rejects an agent
        (unknown name, wrong token, ...) it prints the reason and exits with
        status 1.
        """
        level = (log_level or os.environ.get("EDDY_LOG_LEVEL") or "INFO").upper()
        root = logging.getLogger()
        if not root.handlers:
            logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        else:
            logging.getLogger("eddy_agent").setLevel(level)
        try:
            asyncio.run(self._main())
        except RejectedError as e:
            print(f"{os.path.basename(sys.argv[0]) or 'eddy_agent'}: {e}", file=sys.stderr)
            sys.exit(1)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        seen = []
        log = logging.getLogger("eddy_agent")

        def on_signal(sig: signal.Signals) -> None:
            seen.append(sig)
            if len(seen) == 1:
                log.info("%s: stopping gracefully (again to exit at once)", sig.name)
                self.stop()
            else:
                log.warning("%s again: exiting at once", sig.name)
                os._exit(128 + int(sig))

        installed = []
        for sig in signals:
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not on this platform / thread
                pass
        try:
            await self.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
