import datetime

from eddy_agent._gen.eddy.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_STATUS_UNSPECIFIED: _ClassVar[ResultStatus]
    RESULT_STATUS_OK: _ClassVar[ResultStatus]
    RESULT_STATUS_RETRY: _ClassVar[ResultStatus]
    RESULT_STATUS_DEAD_LETTER: _ClassVar[ResultStatus]
RESULT_STATUS_UNSPECIFIED: ResultStatus
RESULT_STATUS_OK: ResultStatus
RESULT_STATUS_RETRY: ResultStatus
RESULT_STATUS_DEAD_LETTER: ResultStatus

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "credit", "results", "assign_ack", "revoke_ack", "state_get")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_ACK_FIELD_NUMBER: _ClassVar[int]
    REVOKE_ACK_FIELD_NUMBER: _ClassVar[int]
    STATE_GET_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    credit: Credit
    results: Results
    assign_ack: AssignAck
    revoke_ack: RevokeAck
    state_get: StateGet
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., results: _Optional[_Union[Results, _Mapping]] = ..., assign_ack: _Optional[_Union[AssignAck, _Mapping]] = ..., revoke_ack: _Optional[_Union[RevokeAck, _Mapping]] = ..., state_get: _Optional[_Union[StateGet, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "assign", "revoke", "event_batch", "committed", "state_reply")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    EVENT_BATCH_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    STATE_REPLY_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: Assign
    revoke: Revoke
    event_batch: EventBatch
    committed: Committed
    state_reply: StateReply
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., revoke: _Optional[_Union[Revoke, _Mapping]] = ..., event_batch: _Optional[_Union[EventBatch, _Mapping]] = ..., committed: _Optional[_Union[Committed, _Mapping]] = ..., state_reply: _Optional[_Union[StateReply, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent", "instance_id", "protocol_version", "credit", "token", "app")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    agent: str
    instance_id: str
    protocol_version: int
    credit: Credit
    token: str
    app: str
    def __init__(self, agent: _Optional[str] = ..., instance_id: _Optional[str] = ..., protocol_version: _Optional[int] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., token: _Optional[str] = ..., app: _Optional[str] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("events", "bytes")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    events: int
    bytes: int
    def __init__(self, events: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class Results(_message.Message):
    __slots__ = ("topic", "partition", "epoch", "results")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    epoch: int
    results: _containers.RepeatedCompositeFieldContainer[Result]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ..., results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("offset", "status", "error", "produced", "mutations")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PRODUCED_FIELD_NUMBER: _ClassVar[int]
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    status: ResultStatus
    error: str
    produced: _containers.RepeatedCompositeFieldContainer[Record]
    mutations: _containers.RepeatedCompositeFieldContainer[Mutation]
    def __init__(self, offset: _Optional[int] = ..., status: _Optional[_Union[ResultStatus, str]] = ..., error: _Optional[str] = ..., produced: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., mutations: _Optional[_Iterable[_Union[Mutation, _Mapping]]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("topic", "key", "value", "headers", "timestamp")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    topic: str
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Header]
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, topic: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[_common_pb2.Header, _Mapping]]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Mutation(_message.Message):
    __slots__ = ("table", "key", "value", "delete", "window_start")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: bytes
    value: bytes
    delete: bool
    window_start: _timestamp_pb2.Timestamp
    def __init__(self, table: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., delete: _Optional[bool] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AssignAck(_message.Message):
    __slots__ = ("topic", "partition", "epoch")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    epoch: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class RevokeAck(_message.Message):
    __slots__ = ("topic", "partition", "epoch")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    epoch: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class StateGet(_message.Message):
    __slots__ = ("request_id", "topic", "partition", "epoch", "table", "key")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    topic: str
    partition: int
    epoch: int
    table: str
    key: bytes
    def __init__(self, request_id: _Optional[int] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ..., table: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "limits")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    limits: Limits
    def __init__(self, session_id: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_batch_events", "max_batch_bytes", "max_retries")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_batch_events: int
    max_batch_bytes: int
    max_retries: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_batch_events: _Optional[int] = ..., max_batch_bytes: _Optional[int] = ..., max_retries: _Optional[int] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("topic", "partition", "epoch")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    epoch: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class Revoke(_message.Message):
    __slots__ = ("topic", "partition", "epoch", "deadline")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    epoch: int
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("topic", "partition", "epoch", "events")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    epoch: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., epoch: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("offset", "key", "value", "headers", "timestamp", "state", "attempt")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    offset: int
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Header]
    timestamp: _timestamp_pb2.Timestamp
    state: _containers.RepeatedCompositeFieldContainer[TableState]
    attempt: int
    def __init__(self, offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[_common_pb2.Header, _Mapping]]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Iterable[_Union[TableState, _Mapping]]] = ..., attempt: _Optional[int] = ...) -> None: ...

class TableState(_message.Message):
    __slots__ = ("table", "has_value", "value", "window_start")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    HAS_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    table: str
    has_value: bool
    value: bytes
    window_start: _timestamp_pb2.Timestamp
    def __init__(self, table: _Optional[str] = ..., has_value: _Optional[bool] = ..., value: _Optional[bytes] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Committed(_message.Message):
    __slots__ = ("topic", "partition", "offset")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class StateReply(_message.Message):
    __slots__ = ("request_id", "has_value", "value", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    has_value: bool
    value: bytes
    error: str
    def __init__(self, request_id: _Optional[int] = ..., has_value: _Optional[bool] = ..., value: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("name", "topics", "ordering", "tables", "paused", "instances", "unassigned", "in_flight", "lag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    ORDERING_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    ordering: str
    tables: _containers.RepeatedScalarFieldContainer[str]
    paused: bool
    instances: _containers.RepeatedCompositeFieldContainer[AgentInstance]
    unassigned: _containers.RepeatedCompositeFieldContainer[_common_pb2.TopicPartition]
    in_flight: int
    lag: int
    def __init__(self, name: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., ordering: _Optional[str] = ..., tables: _Optional[_Iterable[str]] = ..., paused: _Optional[bool] = ..., instances: _Optional[_Iterable[_Union[AgentInstance, _Mapping]]] = ..., unassigned: _Optional[_Iterable[_Union[_common_pb2.TopicPartition, _Mapping]]] = ..., in_flight: _Optional[int] = ..., lag: _Optional[int] = ...) -> None: ...

class AgentInstance(_message.Message):
    __slots__ = ("instance_id", "session_id", "peer", "connected_at", "partitions", "in_flight", "credit_events")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    session_id: str
    peer: str
    connected_at: _timestamp_pb2.Timestamp
    partitions: _containers.RepeatedCompositeFieldContainer[_common_pb2.TopicPartition]
    in_flight: int
    credit_events: int
    def __init__(self, instance_id: _Optional[str] = ..., session_id: _Optional[str] = ..., peer: _Optional[str] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., partitions: _Optional[_Iterable[_Union[_common_pb2.TopicPartition, _Mapping]]] = ..., in_flight: _Optional[int] = ..., credit_events: _Optional[int] = ...) -> None: ...
