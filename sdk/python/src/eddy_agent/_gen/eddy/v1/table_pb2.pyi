import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListTablesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTablesResponse(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableInfo]
    def __init__(self, tables: _Optional[_Iterable[_Union[TableInfo, _Mapping]]] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("name", "partitions", "changelog_topic", "standby_replicas", "window", "active_partitions", "standby_partitions", "keys")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGELOG_TOPIC_FIELD_NUMBER: _ClassVar[int]
    STANDBY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    STANDBY_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    partitions: int
    changelog_topic: str
    standby_replicas: int
    window: Window
    active_partitions: _containers.RepeatedScalarFieldContainer[int]
    standby_partitions: _containers.RepeatedScalarFieldContainer[int]
    keys: int
    def __init__(self, name: _Optional[str] = ..., partitions: _Optional[int] = ..., changelog_topic: _Optional[str] = ..., standby_replicas: _Optional[int] = ..., window: _Optional[_Union[Window, _Mapping]] = ..., active_partitions: _Optional[_Iterable[int]] = ..., standby_partitions: _Optional[_Iterable[int]] = ..., keys: _Optional[int] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("type", "size", "step", "expires")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    type: str
    size: _duration_pb2.Duration
    step: _duration_pb2.Duration
    expires: _duration_pb2.Duration
    def __init__(self, type: _Optional[str] = ..., size: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expires: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("table", "key", "window_start")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: bytes
    window_start: _timestamp_pb2.Timestamp
    def __init__(self, table: _Optional[str] = ..., key: _Optional[bytes] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("value", "partition", "served_by", "key")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    partition: int
    served_by: str
    key: bytes
    def __init__(self, value: _Optional[bytes] = ..., partition: _Optional[int] = ..., served_by: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("table", "prefix", "limit", "page_token", "partitions")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    table: str
    prefix: bytes
    limit: int
    page_token: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, table: _Optional[str] = ..., prefix: _Optional[bytes] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("entries", "next_page_token", "partitions", "restoring_partitions", "served_by", "forwarded_to")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    RESTORING_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_TO_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    next_page_token: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    restoring_partitions: _containers.RepeatedScalarFieldContainer[int]
    served_by: str
    forwarded_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ..., restoring_partitions: _Optional[_Iterable[int]] = ..., served_by: _Optional[str] = ..., forwarded_to: _Optional[_Iterable[str]] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("key", "value", "partition", "window_start")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    partition: int
    window_start: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., partition: _Optional[int] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
