import datetime

from eddy_agent._gen.eddy.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_STARTING: _ClassVar[WorkerState]
    WORKER_STATE_RECOVERING: _ClassVar[WorkerState]
    WORKER_STATE_RUNNING: _ClassVar[WorkerState]
    WORKER_STATE_PAUSED: _ClassVar[WorkerState]
    WORKER_STATE_STOPPING: _ClassVar[WorkerState]
    WORKER_STATE_STOPPED: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_STARTING: WorkerState
WORKER_STATE_RECOVERING: WorkerState
WORKER_STATE_RUNNING: WorkerState
WORKER_STATE_PAUSED: WorkerState
WORKER_STATE_STOPPING: WorkerState
WORKER_STATE_STOPPED: WorkerState

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("state", "version", "app", "worker_id", "brokers", "embedded_broker", "processing_guarantee", "started_at", "uptime", "grpc_address", "http_address", "assigned", "paused_agents", "agents", "recovery", "stalled", "kafka_errors", "warnings", "last_restores", "errors")
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    BROKERS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_BROKER_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    STALLED_FIELD_NUMBER: _ClassVar[int]
    KAFKA_ERRORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    LAST_RESTORES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    state: WorkerState
    version: str
    app: str
    worker_id: str
    brokers: str
    embedded_broker: bool
    processing_guarantee: str
    started_at: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    grpc_address: str
    http_address: str
    assigned: _containers.RepeatedCompositeFieldContainer[_common_pb2.TopicPartition]
    paused_agents: _containers.RepeatedScalarFieldContainer[str]
    agents: _containers.RepeatedCompositeFieldContainer[AgentSummary]
    recovery: _containers.RepeatedCompositeFieldContainer[RecoveryProgress]
    stalled: _containers.RepeatedCompositeFieldContainer[Stall]
    kafka_errors: _containers.RepeatedCompositeFieldContainer[KafkaError]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    last_restores: _containers.RepeatedCompositeFieldContainer[LastRestore]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[WorkerState, str]] = ..., version: _Optional[str] = ..., app: _Optional[str] = ..., worker_id: _Optional[str] = ..., brokers: _Optional[str] = ..., embedded_broker: _Optional[bool] = ..., processing_guarantee: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., grpc_address: _Optional[str] = ..., http_address: _Optional[str] = ..., assigned: _Optional[_Iterable[_Union[_common_pb2.TopicPartition, _Mapping]]] = ..., paused_agents: _Optional[_Iterable[str]] = ..., agents: _Optional[_Iterable[_Union[AgentSummary, _Mapping]]] = ..., recovery: _Optional[_Iterable[_Union[RecoveryProgress, _Mapping]]] = ..., stalled: _Optional[_Iterable[_Union[Stall, _Mapping]]] = ..., kafka_errors: _Optional[_Iterable[_Union[KafkaError, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., last_restores: _Optional[_Iterable[_Union[LastRestore, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentSummary(_message.Message):
    __slots__ = ("name", "instances", "partitions", "paused")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    instances: int
    partitions: int
    paused: bool
    def __init__(self, name: _Optional[str] = ..., instances: _Optional[int] = ..., partitions: _Optional[int] = ..., paused: _Optional[bool] = ...) -> None: ...

class RecoveryProgress(_message.Message):
    __slots__ = ("table", "partition", "done", "total", "records_per_second", "remaining")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    table: str
    partition: int
    done: int
    total: int
    records_per_second: float
    remaining: _duration_pb2.Duration
    def __init__(self, table: _Optional[str] = ..., partition: _Optional[int] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., records_per_second: _Optional[float] = ..., remaining: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LastRestore(_message.Message):
    __slots__ = ("table", "partition", "full", "reason", "from_offset", "to_offset", "records", "duration", "finished_at", "error")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TO_OFFSET_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    table: str
    partition: int
    full: bool
    reason: str
    from_offset: int
    to_offset: int
    records: int
    duration: _duration_pb2.Duration
    finished_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, table: _Optional[str] = ..., partition: _Optional[int] = ..., full: _Optional[bool] = ..., reason: _Optional[str] = ..., from_offset: _Optional[int] = ..., to_offset: _Optional[int] = ..., records: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class Stall(_message.Message):
    __slots__ = ("partition", "agent", "instance_id", "since", "reason")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    partition: _common_pb2.TopicPartition
    agent: str
    instance_id: str
    since: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, partition: _Optional[_Union[_common_pb2.TopicPartition, _Mapping]] = ..., agent: _Optional[str] = ..., instance_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class KafkaError(_message.Message):
    __slots__ = ("at", "code", "message", "fatal")
    AT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    code: str
    message: str
    fatal: bool
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("state", "paused_agents")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    state: WorkerState
    paused_agents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[WorkerState, str]] = ..., paused_agents: _Optional[_Iterable[str]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("state", "paused_agents")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    state: WorkerState
    paused_agents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[WorkerState, str]] = ..., paused_agents: _Optional[_Iterable[str]] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ("deadline",)
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers", "worker_id")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    worker_id: str
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ..., worker_id: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "grpc_address", "assigned")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    grpc_address: str
    assigned: _containers.RepeatedCompositeFieldContainer[_common_pb2.TopicPartition]
    def __init__(self, worker_id: _Optional[str] = ..., grpc_address: _Optional[str] = ..., assigned: _Optional[_Iterable[_Union[_common_pb2.TopicPartition, _Mapping]]] = ...) -> None: ...
