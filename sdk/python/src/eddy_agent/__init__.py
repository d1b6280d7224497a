"""Eddy agents in Python.

An agent is an ``async def`` function of one :class:`Event`, run in its own
process and fed the events of Kafka partitions by an Eddy worker over gRPC
(the agent protocol, docs/protocol.md). The worker does everything Kafka:
consuming, producing what the agent emits, retrying, dead-lettering,
committing::

    from eddy_agent import App, Event, DeadLetter

    app = App(app="wordcount")               # the app file's app (default $EDDY_APP);
                                             # worker at $EDDY_ADDR, else 127.0.0.1:6066

    @app.agent("count")
    async def count(event: Event) -> None:
        for word in event.value.decode().split():
            event.emit("words", key=word, value=b"1")

    if __name__ == "__main__":
        app.main()

Returning is OK; ``raise DeadLetter(...)`` sends the event to the agent's
dead-letter topic; ``raise Retry(...)`` or any other exception has it
delivered again after a backoff (and dead-lettered after ``max_retries``).
"""

from ._options import (
    DEFAULT_ADDR,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_BACKOFF_MIN,
    DEFAULT_CREDIT_BYTES,
    DEFAULT_CREDIT_EVENTS,
    DEFAULT_DRAIN_TIMEOUT,
    ENV_ADDR,
    ENV_APP,
    ENV_TOKEN,
)
from ._session import PROTOCOL_VERSION
from .agent import Agent, Handler
from .app import App
from .errors import (
    DeadLetter,
    NotSupportedError,
    ProtocolVersionError,
    ProtocolViolationError,
    RejectedError,
    Retry,
    Status,
    UnauthenticatedError,
    UnknownAgentError,
    WrongAppError,
    error_text,
    status_of,
)
from .event import Event, Header, Mutation, Record, Window

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDR",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_BACKOFF_MIN",
    "DEFAULT_CREDIT_BYTES",
    "DEFAULT_CREDIT_EVENTS",
    "DEFAULT_DRAIN_TIMEOUT",
    "ENV_ADDR",
    "ENV_APP",
    "ENV_TOKEN",
    "PROTOCOL_VERSION",
    "Agent",
    "App",
    "DeadLetter",
    "Event",
    "Handler",
    "Header",
    "Mutation",
    "NotSupportedError",
    "ProtocolVersionError",
    "ProtocolViolationError",
    "Record",
    "RejectedError",
    "Retry",
    "Status",
    "UnauthenticatedError",
    "UnknownAgentError",
    "Window",
    "WrongAppError",
    "error_text",
    "status_of",
]
