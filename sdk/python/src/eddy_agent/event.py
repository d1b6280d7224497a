"""Events delivered to handlers, and the records and state changes they ask for."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any, Callable, NamedTuple, Union

__all__ = ["Event", "Header", "Headers", "Mutation", "Record", "Window"]

Header = tuple[str, bytes]
"""One Kafka record header: ``(key, value)``. Keys may repeat."""

BytesLike = Union[bytes, bytearray, memoryview, str]
"""Keys and values: bytes, or ``str`` (encoded as UTF-8)."""

Headers = Union[Mapping[str, BytesLike], Iterable[tuple[str, BytesLike]]]
"""Headers given to :meth:`Event.emit`: a mapping or ``(key, value)`` pairs."""


class Record(NamedTuple):
    """A record for the worker to produce if the event's outcome is OK."""

    topic: str
    """The destination topic."""
    key: bytes = b""
    """The record key; empty means no key. The worker partitions by key like the Java client."""
    value: bytes = b""
    """The record value."""
    headers: tuple[Header, ...] = ()
    """The record headers, in order."""
    timestamp: datetime.datetime | None = None
    """The record's timestamp; ``None``: the input event's (as in Kafka Streams)."""


class Mutation(NamedTuple):
    """A change of one table key, applied by the worker if the event's outcome is OK."""

    table: str
    """The table, one of the agent's ``tables`` in the app file."""
    key: bytes
    """The table key: the event's key."""
    value: bytes | None
    """The new value; ``None`` deletes the key."""
    window_start: datetime.datetime | None = None
    """For a windowed table, the start of the window changed (UTC); ``None`` for a plain table."""


class Window(NamedTuple):
    """The value of a windowed table for the event's key in one window (see :meth:`Event.windows`)."""

    start: datetime.datetime
    """The window's start: a timezone-aware UTC datetime (Kafka timestamps have millisecond precision)."""
    value: bytes | None
    """The window's value, or ``None`` when the key has no value in that window."""


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_NS = 1_000_000_000


def _ns_of(what: str, dt: Any) -> int:
    """Nanoseconds since the Unix epoch of a timezone-aware datetime."""
    if not isinstance(dt, datetime.datetime):
        raise TypeError(f"{what} must be a datetime, not {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(
            f"{what} must be a timezone-aware datetime, not naive {dt.isoformat()} "
            "(use e.g. datetime.timezone.utc, as in Window.start)"
        )
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * _NS + d.microseconds * 1000


def _dt_of_ns(ns: int) -> datetime.datetime:
    """The UTC datetime of nanoseconds since the Unix epoch (to the microsecond)."""
    return _EPOCH + datetime.timedelta(microseconds=ns // 1000)


def _ts_ns(ts: Any) -> int:
    """Nanoseconds since the Unix epoch of a google.protobuf.Timestamp."""
    return ts.seconds * _NS + ts.nanos


def _to_bytes(what: str, v: BytesLike | None) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{what} must be bytes or str, not {type(v).__name__}")


def _headers(hs: Headers) -> tuple[Header, ...]:
    t = type(hs)
    items: Iterable[tuple[str, BytesLike]] = (
        hs if t is list or t is tuple else hs.items() if isinstance(hs, Mapping) else hs  # type: ignore[assignment]
    )
    out = []
    for k, v in items:
        if type(k) is not str:
            raise TypeError(f"header key must be str, not {type(k).__name__}")
        if type(v) is not bytes:
            v = _to_bytes(f"header {k!r}", v)
        out.append((k, v))
    return tuple(out)


class Event:
    """One Kafka record delivered to a handler, and what the handler asks for.

    The attributes are the record as read from Kafka; treat them as read-only.
    :meth:`emit`, :meth:`set_state`, :meth:`delete_state`,
    :meth:`set_window_state` and :meth:`delete_window_state` collect what the
    worker should do **if the outcome is OK**: records and state changes are
    discarded when the handler raises. Calls made after the handler returned
    are ignored and logged.

    The SDK creates events. Tests of a handler may create one directly and
    inspect what the handler did::

        ev = Event(topic="lines", value=b"a b a")
        await count(ev)
        assert [r.key for r in ev.emitted] == [b"a", b"b", b"a"]
    """

    __slots__ = (
        "topic",
        "partition",
        "offset",
        "key",
        "value",
        "headers",
        "_timestamp",
        "_ts_proto",
        "attempt",
        "_state",
        "_windows",
        "_produced",
        "_mutations",
        "_closed",
        "_on_late",
    )

    topic: str
    """The source topic."""
    partition: int
    """The source partition."""
    offset: int
    """The record's offset in its partition."""
    key: bytes
    """The record key; empty when the record has none."""
    value: bytes
    """The record value."""
    headers: list[Header]
    """The record headers, in order, as ``(key, value)`` pairs."""
    attempt: int
    """Deliveries of this event: 1 the first time, 2 after one RETRY, and so on."""

    def __init__(
        self,
        topic: str = "",
        partition: int = 0,
        offset: int = 0,
        key: BytesLike | None = b"",
        value: BytesLike | None = b"",
        headers: Headers | None = None,
        timestamp: datetime.datetime | None = None,
        attempt: int = 1,
        state: Mapping[str, bytes | None] | None = None,
        windows: Mapping[str, Iterable[tuple[datetime.datetime, bytes | None]]] | None = None,
    ) -> None:
        """Create an event, for tests of handlers.

        ``state`` gives plain tables' values for the event's key, as the worker
        would deliver them (``None``: the key has no value in that table).
        ``windows`` gives windowed tables' windows for the event's key, as
        :class:`Window` s or ``(start, value)`` pairs with timezone-aware
        starts, for example ``{"per-minute": [Window(start, b"3")]}``.
        """
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = _to_bytes("key", key)
        self.value = _to_bytes("value", value)
        self.headers = list(_headers(headers)) if headers else []
        self._timestamp = timestamp
        self._ts_proto: Any = None
        self.attempt = attempt
        self._state: dict[str, bytes | None] = dict(state) if state else {}
        # Windowed tables: table -> window start (ns since the epoch) -> value.
        self._windows: dict[str, dict[int, bytes | None]] = {}
        if windows:
            for table, ws in windows.items():
                got = self._windows[table] = {}
                for start, v in ws:
                    got[_ns_of("window start", start)] = v
        self._produced: list[Record] = []
        self._mutations: list[Mutation] = []
        self._closed = False
        self._on_late: Callable[[str, Event], None] | None = None

    @classmethod
    def _from_proto(cls, topic: str, partition: int, pe: Any) -> Event:
        """An event from an eddy.v1.Event of the given topic-partition."""
        ev = cls.__new__(cls)
        ev.topic = topic
        ev.partition = partition
        ev.offset = pe.offset
        ev.key = pe.key
        ev.value = pe.value
        ev.headers = [(h.key, h.value) for h in pe.headers] if len(pe.headers) else []
        ev._timestamp = None
        ev._ts_proto = pe.timestamp if pe.HasField("timestamp") else None
        ev.attempt = pe.attempt
        ev._state = {}
        ev._windows = {}
        if len(pe.state):
            for st in pe.state:
                if st.HasField("window_start"):
                    w = ev._windows.get(st.table)
                    if w is None:
                        w = ev._windows[st.table] = {}
                    w[_ts_ns(st.window_start)] = st.value if st.has_value else None
                else:
                    ev._state[st.table] = st.value if st.has_value else None
        ev._produced = []
        ev._mutations = []
        ev._closed = False
        ev._on_late = None
        return ev

    @property
    def timestamp(self) -> datetime.datetime | None:
        """The record timestamp (UTC), or ``None`` when the record has none."""
        if self._timestamp is None and self._ts_proto is not None:
            ts = self._ts_proto
            self._timestamp = datetime.datetime.fromtimestamp(ts.seconds, datetime.timezone.utc) + datetime.timedelta(
                microseconds=ts.nanos // 1000
            )
            self._ts_proto = None
        return self._timestamp

    def __repr__(self) -> str:
        return (
            f"Event(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value[:64]!r}{'...' if len(self.value) > 64 else ''}, "
            f"attempt={self.attempt})"
        )

    def _late(self, what: str) -> bool:
        if not self._closed:
            return False
        if self._on_late is not None:
            self._on_late(what, self)
        return True

    def emit(
        self,
        topic: str,
        value: BytesLike | None = None,
        *,
        key: BytesLike | None = None,
        headers: Headers | None = None,
        timestamp: datetime.datetime | None = None,
    ) -> None:
        """Ask the worker to produce a record to ``topic`` if the outcome is OK.

        Records are produced in the order emitted, with the app's guarantee
        (at-least-once or exactly-once), and the event is committed only once
        Kafka has acknowledged them. ``key`` and ``value`` are bytes or ``str``
        (UTF-8); ``None`` means empty. ``headers`` is a mapping or a sequence of
        ``(key, value)`` pairs. ``timestamp`` (an aware ``datetime``) is the
        record's timestamp; by default the worker gives it the input event's.

        Raises ``ValueError`` for an empty topic and ``TypeError`` for values
        that are not bytes or str; raised from the handler, they make the
        outcome RETRY like any other exception.
        """
        if self._closed:
            self._late("emit")
            return
        if not topic:
            raise ValueError("emit: empty topic")
        if type(key) is not bytes:
            key = _to_bytes("key", key)
        if type(value) is not bytes:
            value = _to_bytes("value", value)
        if timestamp is not None and (not isinstance(timestamp, datetime.datetime) or timestamp.tzinfo is None):
            raise TypeError("emit: timestamp must be a timezone-aware datetime")
        self._produced.append(Record(topic, key, value, _headers(headers) if headers else (), timestamp))

    @property
    def emitted(self) -> list[Record]:
        """The records emitted so far, in order (a copy). Meant for tests of handlers."""
        return list(self._produced)

    def state(self, table: str) -> bytes | None:
        """The value of ``table`` for the event's key, or ``None`` when it has none.

        The value is the one the worker delivered with the event, as changed by
        the earlier events of the key in the same batch whose outcome was OK,
        and by this handler's :meth:`set_state` and :meth:`delete_state`. Tables are declared
        per agent in the app file (``tables: [...]``); a table that is not one of
        the agent's also gives ``None``, and so does a windowed table (one with
        ``window:``), whose values are per window: see :meth:`windows`.
        """
        return self._state.get(table)

    def set_state(self, table: str, value: BytesLike) -> None:
        """Set the value of ``table`` for the event's key if the outcome is OK.

        The worker writes it to the table's changelog topic, then to its store,
        before committing the event. ``table`` must be one of the agent's
        tables in the app file, and not a windowed one (``ValueError``: use
        :meth:`set_window_state`).
        """
        self._mutate(table, _to_bytes("value", value))

    def delete_state(self, table: str) -> None:
        """Remove the event's key from ``table`` if the outcome is OK.

        ``table`` must not be a windowed table (``ValueError``: use
        :meth:`delete_window_state`).
        """
        self._mutate(table, None)

    def _mutate(self, table: str, value: bytes | None) -> None:
        if self._late("set_state/delete_state"):
            return
        if not table:
            raise ValueError("set_state/delete_state: empty table")
        if table in self._windows:
            raise ValueError(
                f"set_state/delete_state: table {table!r} is windowed: use set_window_state/delete_window_state"
            )
        self._mutations.append(Mutation(table, self.key, value))
        self._state[table] = value

    def windows(self, table: str) -> list[Window]:
        """The windows of windowed ``table`` for the event's key, oldest first.

        For a table declared with ``window:`` in the app file, the worker
        delivers with each event one window per window the event's timestamp
        falls in that has not expired: one for tumbling windows, several for
        hopping ones. Each :class:`Window` has its ``start`` (UTC) and the
        key's ``value`` in it (``None``: no value), as delivered, changed by
        the earlier events of the key in the same batch whose outcome was OK
        and by this handler's :meth:`set_window_state` and
        :meth:`delete_window_state`. A plain table, a table that is not one of
        the agent's and a late event whose windows have all expired give
        ``[]``. The list is a copy.
        """
        w = self._windows.get(table)
        if not w:
            return []
        return [Window(_dt_of_ns(ns), w[ns]) for ns in sorted(w)]

    def set_window_state(self, table: str, start: datetime.datetime, value: BytesLike) -> None:
        """Set the value of windowed ``table`` for the event's key in the window
        starting at ``start``, if the outcome is OK.

        ``start`` must be the start of one of the windows delivered with the
        event (a :attr:`Window.start` from :meth:`windows`), as a
        timezone-aware datetime: a naive one raises ``ValueError``, a value
        that is no datetime ``TypeError``. A start that names no delivered
        window, and a table that is not windowed, raise ``ValueError``
        (the worker would refuse the result). Raised from the handler, these
        make the outcome RETRY like any other exception.
        """
        self._mutate_window(table, start, _to_bytes("value", value))

    def delete_window_state(self, table: str, start: datetime.datetime) -> None:
        """Remove the event's key from windowed ``table`` in the window starting
        at ``start``, if the outcome is OK. ``start`` as for :meth:`set_window_state`."""
        self._mutate_window(table, start, None)

    def _mutate_window(self, table: str, start: datetime.datetime, value: bytes | None) -> None:
        what = "set_window_state/delete_window_state"
        if self._late(what):
            return
        if not table:
            raise ValueError(f"{what}: empty table")
        ns = _ns_of(f"{what}: window start", start)
        if table in self._state:
            raise ValueError(f"{what}: table {table!r} is not windowed: use set_state/delete_state")
        w = self._windows.get(table)
        if w is not None and ns not in w:
            have = ", ".join(_dt_of_ns(n).isoformat() for n in sorted(w)) or "none"
            raise ValueError(
                f"{what}: no window of table {table!r} starting at {start.isoformat()} "
                f"was delivered with the event (windows: {have})"
            )
        self._mutations.append(Mutation(table, self.key, value, _dt_of_ns(ns)))
        if w is not None:
            w[ns] = value

    def _apply_overlay(self, seen: Mapping[str | tuple[str, int], bytes | None]) -> None:
        """Apply the changes of earlier OK events of the key in the batch:
        table -> value for plain tables, (table, window start ns) -> value for
        windowed ones (only to windows delivered with this event)."""
        for k, v in seen.items():
            if isinstance(k, str):
                self._state[k] = v
            else:
                table, ns = k
                w = self._windows.get(table)
                if w is not None and ns in w:
                    w[ns] = v

    @property
    def mutations(self) -> list[Mutation]:
        """The state changes asked for so far, in order (a copy). Meant for tests.

        Changes of windowed tables have their :attr:`Mutation.window_start` set."""
        return list(self._mutations)
