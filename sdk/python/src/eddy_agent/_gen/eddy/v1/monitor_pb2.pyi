import datetime

from eddy_agent._gen.eddy.v1 import lifecycle_pb2 as _lifecycle_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetSnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("interval",)
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("snapshot", "dropped")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    dropped: int
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., dropped: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("taken_at", "state", "partitions", "agents", "rebalances", "stalled")
    TAKEN_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    REBALANCES_FIELD_NUMBER: _ClassVar[int]
    STALLED_FIELD_NUMBER: _ClassVar[int]
    taken_at: _timestamp_pb2.Timestamp
    state: _lifecycle_pb2.WorkerState
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionStats]
    agents: _containers.RepeatedCompositeFieldContainer[AgentStats]
    rebalances: int
    stalled: _containers.RepeatedCompositeFieldContainer[_lifecycle_pb2.Stall]
    def __init__(self, taken_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[_lifecycle_pb2.WorkerState, str]] = ..., partitions: _Optional[_Iterable[_Union[PartitionStats, _Mapping]]] = ..., agents: _Optional[_Iterable[_Union[AgentStats, _Mapping]]] = ..., rebalances: _Optional[int] = ..., stalled: _Optional[_Iterable[_Union[_lifecycle_pb2.Stall, _Mapping]]] = ...) -> None: ...

class PartitionStats(_message.Message):
    __slots__ = ("topic", "partition", "agent", "received", "delivered", "acked", "retried", "dead_lettered", "in_flight", "lag", "committed", "processing_p99", "end_to_end_p99", "events_per_second", "processed")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_P99_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_P99_FIELD_NUMBER: _ClassVar[int]
    EVENTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    agent: str
    received: int
    delivered: int
    acked: int
    retried: int
    dead_lettered: int
    in_flight: int
    lag: int
    committed: int
    processing_p99: _duration_pb2.Duration
    end_to_end_p99: _duration_pb2.Duration
    events_per_second: float
    processed: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., agent: _Optional[str] = ..., received: _Optional[int] = ..., delivered: _Optional[int] = ..., acked: _Optional[int] = ..., retried: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., in_flight: _Optional[int] = ..., lag: _Optional[int] = ..., committed: _Optional[int] = ..., processing_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_to_end_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., events_per_second: _Optional[float] = ..., processed: _Optional[int] = ...) -> None: ...

class AgentStats(_message.Message):
    __slots__ = ("agent", "sessions", "connects", "disconnects", "acked", "in_flight", "stale_dropped", "processed")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CONNECTS_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTS_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    STALE_DROPPED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    agent: str
    sessions: int
    connects: int
    disconnects: int
    acked: int
    in_flight: int
    stale_dropped: int
    processed: int
    def __init__(self, agent: _Optional[str] = ..., sessions: _Optional[int] = ..., connects: _Optional[int] = ..., disconnects: _Optional[int] = ..., acked: _Optional[int] = ..., in_flight: _Optional[int] = ..., stale_dropped: _Optional[int] = ..., processed: _Optional[int] = ...) -> None: ...
