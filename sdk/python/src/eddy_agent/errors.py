"""Outcomes a handler can ask for, and the errors the SDK raises.

A handler's outcome is decided by how it ends:

- it returns: OK, the records it emitted are produced and its state changes
  applied;
- it raises :class:`DeadLetter`: DEAD_LETTER, the worker writes the event to the
  agent's dead-letter topic ``<app>-<agent>-dlq`` with the reason in its headers;
- it raises :class:`Retry`, or any other exception: RETRY, the worker delivers
  the event again after a backoff, and dead-letters it after ``max_retries``.

:class:`RejectedError` and its subclasses are raised by ``Agent.run`` /
``App.run`` when the worker refuses the agent for a reason reconnecting cannot
fix (unknown agent name, wrong token, ...).
"""

from __future__ import annotations

import enum

import grpc

__all__ = [
    "DeadLetter",
    "NotSupportedError",
    "ProtocolVersionError",
    "ProtocolViolationError",
    "RejectedError",
    "Retry",
    "Status",
    "UnauthenticatedError",
    "UnknownAgentError",
    "WrongAppError",
    "status_of",
]


class Status(enum.Enum):
    """The outcome of one event, as the worker sees it."""

    OK = "OK"
    """Processed: emitted records are produced and state changes applied."""
    RETRY = "RETRY"
    """Delivered again after a backoff, until the worker's maximum of retries."""
    DEAD_LETTER = "DEAD_LETTER"
    """Written to the agent's dead-letter topic; processing moves on."""

    def __str__(self) -> str:
        return self.value


class Retry(Exception):
    """Raise from a handler to make the event's outcome RETRY.

    The worker delivers the event again after a backoff (with ``attempt``
    increased) and dead-letters it after the agent's ``max_retries``. Raising
    any exception other than :class:`DeadLetter` has the same effect; ``Retry``
    makes the intent explicit. The message (and the cause, with ``raise
    Retry(...) from err``) becomes the result's error text.
    """


class DeadLetter(Exception):
    """Raise from a handler to make the event's outcome DEAD_LETTER.

    The worker writes the event to the agent's dead-letter topic
    ``<app>-<agent>-dlq``, with the message (and the cause, with ``raise
    DeadLetter(...) from err``) in its ``eddy.error`` header, and moves on. Use
    it for events that can never succeed, such as invalid input.
    """


def status_of(exc: BaseException | None) -> Status:
    """Return the outcome a handler ending with ``exc`` stands for.

    ``None`` (the handler returned) is OK, a :class:`DeadLetter` is DEAD_LETTER
    and any other exception RETRY. Handy in tests of handlers.
    """
    if exc is None:
        return Status.OK
    if isinstance(exc, DeadLetter):
        return Status.DEAD_LETTER
    return Status.RETRY


def _describe(exc: BaseException) -> str:
    """``Type: message``, the type alone when the message is empty."""
    name = type(exc).__qualname__
    mod = type(exc).__module__
    if mod not in ("builtins", "__main__") and not mod.startswith("eddy_agent"):
        name = f"{mod}.{name}"
    text = str(exc)
    return f"{name}: {text}" if text else name


def error_text(exc: BaseException) -> str:
    """The error text of a RETRY or DEAD_LETTER result for ``exc``.

    :class:`Retry` and :class:`DeadLetter` give their message (``RETRY
    requested`` / ``DEAD_LETTER requested`` when empty), followed by their
    cause if any; other exceptions give their type and message, such as
    ``ValueError: invalid literal for int() with base 10: 'x'``.
    """
    if isinstance(exc, (Retry, DeadLetter)):
        text = str(exc) or f"{status_of(exc)} requested"
        cause = exc.__cause__
        if cause is not None:
            text = f"{text}: {_describe(cause)}"
        return text
    return _describe(exc)


class RejectedError(Exception):
    """The worker refused the agent for a reason reconnecting cannot fix.

    ``Agent.run`` and ``App.run`` raise a subclass instead of reconnecting:
    :class:`UnknownAgentError`, :class:`UnauthenticatedError`,
    :class:`WrongAppError`, :class:`ProtocolVersionError`,
    :class:`ProtocolViolationError` or :class:`NotSupportedError`. The message names the worker, the agent and the
    worker's reason, for example::

        worker at 127.0.0.1:6066 rejected agent 'routr': the worker does not
        know this agent: unknown agent "routr" (NOT_FOUND)
    """

    reason = "the worker rejected the agent"

    def __init__(self, agent: str, addr: str, code: grpc.StatusCode, message: str) -> None:
        self.agent = agent
        """The agent name sent in Hello."""
        self.addr = addr
        """The worker address."""
        self.code = code
        """The gRPC status code the worker ended the stream with."""
        self.message = message
        """The worker's explanation (the status details)."""
        super().__init__(f"worker at {addr} rejected agent {agent!r}: {self.reason}: {message} ({code.name})")


class UnknownAgentError(RejectedError):
    """No agent of this name in the worker's app file (gRPC NOT_FOUND)."""

    reason = "the worker does not know this agent"


class UnauthenticatedError(RejectedError):
    """The token is missing or wrong (gRPC UNAUTHENTICATED or PERMISSION_DENIED)."""

    reason = "the worker rejected the token"


class ProtocolVersionError(RejectedError):
    """The worker does not speak this SDK's protocol version (gRPC FAILED_PRECONDITION)."""

    reason = "the worker does not support this protocol version"


class WrongAppError(RejectedError):
    """The worker belongs to another app than ``app`` (gRPC FAILED_PRECONDITION
    with the ErrorInfo reason APP_MISMATCH, docs/protocol.md): typically a
    wrong address."""

    reason = "the worker belongs to another app"


class ProtocolViolationError(RejectedError):
    """The worker says the SDK broke the protocol, a bug (gRPC INVALID_ARGUMENT)."""

    reason = "the worker reports a protocol violation"


class NotSupportedError(RejectedError):
    """The worker has no agent support at all, e.g. an older worker (gRPC UNIMPLEMENTED)."""

    reason = "the worker does not support remote agents"


_PERMANENT: dict[grpc.StatusCode, type[RejectedError]] = {
    grpc.StatusCode.NOT_FOUND: UnknownAgentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.FAILED_PRECONDITION: ProtocolVersionError,
    grpc.StatusCode.INVALID_ARGUMENT: ProtocolViolationError,
    grpc.StatusCode.UNIMPLEMENTED: NotSupportedError,
}


def rejection(agent: str, addr: str, err: BaseException | None) -> RejectedError | None:
    """A RejectedError when ``err`` is a gRPC status reconnecting cannot fix."""
    if not isinstance(err, grpc.aio.AioRpcError):
        return None
    cls = _PERMANENT.get(err.code())
    if cls is None:
        return None
    if err.code() == grpc.StatusCode.FAILED_PRECONDITION and (_ERROR_DOMAIN, _REASON_APP_MISMATCH) in _error_infos(err):
        cls = WrongAppError
    exc = cls(agent, addr, err.code(), err.details() or "")
    exc.__cause__ = err
    return exc


# The google.rpc.ErrorInfo the worker attaches when a status code alone does
# not say what is wrong (docs/protocol.md).
_ERROR_DOMAIN = "eddy.v1"
_REASON_APP_MISMATCH = "APP_MISMATCH"
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def _error_infos(err: grpc.aio.AioRpcError) -> set[tuple[str, str]]:
    """The (domain, reason) of every ErrorInfo in the status details.

    The details travel as a serialized google.rpc.Status in the
    ``grpc-status-details-bin`` trailer. Its few fields are read by hand, so
    the SDK needs no package for the google.rpc messages."""
    out: set[tuple[str, str]] = set()
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            for field, any_msg in _fields(value):
                if field != 3 or not isinstance(any_msg, bytes):  # Status.details
                    continue
                any_fields = dict(_fields(any_msg))  # Any: 1 type_url, 2 value
                if any_fields.get(1) != _ERROR_INFO_TYPE.encode() or not isinstance(any_fields.get(2), bytes):
                    continue
                info = dict(_fields(any_fields[2]))  # ErrorInfo: 1 reason, 2 domain
                reason, domain = info.get(1, b""), info.get(2, b"")
                if isinstance(reason, bytes) and isinstance(domain, bytes):
                    out.add((domain.decode("utf-8", "replace"), reason.decode("utf-8", "replace")))
        except ValueError:
            continue  # not a Status: no details to go by
    return out


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message: varints as
    ints, length-delimited fields as bytes; fixed-width ones are skipped.
    Raises ValueError on malformed input."""

    def varint(i: int) -> tuple[int, int]:
        v = shift = 0
        while True:
            if i >= len(buf) or shift > 63:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v, i

    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(i)
            out.append((field, v))
        elif wire == 2:
            n, i = varint(i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            out.append((field, buf[i : i + n]))
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out
