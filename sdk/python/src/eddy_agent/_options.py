"""Options shared by Agent and App: defaults, validation, instance ids, backoff."""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
from dataclasses import dataclass
from typing import Callable, Optional

import grpc

DEFAULT_ADDR = "127.0.0.1:6066"
"""The worker address when neither ``addr`` nor ``$EDDY_ADDR`` gives one."""
DEFAULT_CREDIT_EVENTS = 1000
"""The event window: at most this many events delivered and not finished."""
DEFAULT_CREDIT_BYTES = 8 << 20
"""The byte window: at most this many key+value bytes delivered and not finished."""
DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds a graceful stop waits for events in progress."""
DEFAULT_BACKOFF_MIN = 0.1
"""Seconds before the first reconnection attempt."""
DEFAULT_BACKOFF_MAX = 5.0
"""Upper bound, in seconds, of the delay between reconnection attempts."""
DEFAULT_DISCOVERY = 5.0
"""Seconds between two readings of the app's list of workers."""

ENV_ADDR = "EDDY_ADDR"
ENV_TOKEN = "EDDY_TOKEN"
ENV_APP = "EDDY_APP"

OnCommitted = Callable[[str, int, int], None]


@dataclass
class Options:
    app: str
    addr: str
    token: str
    instance_id: str
    credit_events: int
    credit_bytes: int
    concurrency: int
    drain_timeout: float
    backoff_min: float
    backoff_max: float
    on_committed: Optional[OnCommitted]
    credentials: Optional[grpc.ChannelCredentials]
    logger: logging.Logger
    discovery: float = DEFAULT_DISCOVERY

    @property
    def addrs(self) -> list[str]:
        """The addresses of ``addr``, a comma-separated list."""
        if not isinstance(self.addr, str):
            return []
        return [a.strip() for a in self.addr.split(",")]

    def problems(self) -> list[str]:
        """Every invalid value, named by its parameter."""
        out = []
        if not isinstance(self.app, str) or not self.app:
            out.append(f"app: empty: pass app=... (the app file's app) or set ${ENV_APP}")
        elif not _printable(self.app):
            out.append(f"app: {self.app!r} contains whitespace or non-printable characters")
        for a in self.addrs or [self.addr]:
            err = _addr_problem(a)
            if err:
                out.append(f"addr: {err}")
        if not _is_num(self.discovery) or self.discovery < 0:
            out.append(f"discovery: {self.discovery!r} is negative or not a number")
        if not _printable(self.token):
            # Header values must be visible ASCII; anything else is a paste
            # mistake (a trailing newline, typically).
            out.append("token: contains whitespace or non-printable characters")
        if not self.instance_id:
            out.append("instance_id: empty")
        elif not _printable(self.instance_id):
            out.append(f"instance_id: {self.instance_id!r} contains whitespace or non-printable characters")
        if not _is_int(self.credit_events) or not 1 <= self.credit_events <= 0xFFFFFFFF:
            out.append(f"credit_events: {self.credit_events!r} is not in 1..4294967295")
        if not _is_int(self.credit_bytes) or self.credit_bytes < 1:
            out.append(f"credit_bytes: {self.credit_bytes!r} is not a positive integer")
        if not _is_int(self.concurrency) or self.concurrency < 0:
            out.append(f"concurrency: {self.concurrency!r} is negative or not an integer")
        if not _is_num(self.drain_timeout) or self.drain_timeout < 0:
            out.append(f"drain_timeout: {self.drain_timeout!r} is negative or not a number")
        if not _is_num(self.backoff_min) or not _is_num(self.backoff_max) or self.backoff_min <= 0 or self.backoff_max <= 0:
            out.append(f"backoff: {self.backoff_min!r} and {self.backoff_max!r} must both be positive numbers")
        elif self.backoff_min > self.backoff_max:
            out.append(f"backoff: minimum {self.backoff_min}s exceeds maximum {self.backoff_max}s")
        if self.on_committed is not None and not callable(self.on_committed):
            out.append("on_committed: not callable")
        return out


def file_credentials(
    credentials: Optional[grpc.ChannelCredentials],
    ca_file: Optional[str],
    cert_file: Optional[str],
    key_file: Optional[str],
    problems: list[str],
) -> Optional[grpc.ChannelCredentials]:
    """TLS channel credentials from PEM files (docs/operations.md#security).

    ``ca_file`` holds the CAs the worker's certificate must verify against
    (default: the system roots); ``cert_file`` and ``key_file``, both or
    neither, are the client certificate a worker with
    ``tls.client_ca_file`` requires. No file given: ``credentials`` as is.
    Each unusable file or conflict is added to ``problems``, named."""
    if not (ca_file or cert_file or key_file):
        return credentials
    if credentials is not None:
        problems.append("credentials and tls_ca_file/tls_cert_file/tls_key_file exclude each other: give one TLS configuration")
        return None
    if bool(cert_file) != bool(key_file):
        problems.append(
            f"tls_cert_file and tls_key_file go together (got tls_cert_file={cert_file!r}, tls_key_file={key_file!r})"
        )
        return None
    read: dict[str, Optional[bytes]] = {}
    for name, path in (("tls_ca_file", ca_file), ("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        if not path:
            read[name] = None
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            problems.append(f"{name}: {path}: {e.strerror or e}")
            continue
        if b"-----BEGIN " not in data:
            problems.append(f"{name}: {path} holds no PEM data")
            continue
        read[name] = data
    if len(read) < 3:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=read["tls_ca_file"],
        private_key=read["tls_key_file"],
        certificate_chain=read["tls_cert_file"],
    )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _printable(s: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in s)


def _addr_problem(addr: str) -> str | None:
    if not isinstance(addr, str) or not addr:
        return f"invalid worker address {addr!r}: want host:port"
    if "/" in addr:
        return f"invalid worker address {addr!r}: want host:port, without a scheme"
    host, sep, port = addr.rpartition(":")
    if not sep:
        return f"invalid worker address {addr!r}: missing port; want host:port"
    if host.count(":") and not (host.startswith("[") and host.endswith("]")):
        return f"invalid worker address {addr!r}: too many colons; want host:port ([::1]:port for IPv6)"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"invalid worker address {addr!r}: bad port {port!r}; want host:port"
    return None


_instance_id: tuple[int, str] | None = None


def default_instance_id() -> str:
    """``<hostname>-<pid>-<random>``, chosen once per process (a forked child
    chooses its own)."""
    global _instance_id
    pid = os.getpid()
    if _instance_id is None or _instance_id[0] != pid:
        _instance_id = (pid, _new_instance_id())
    return _instance_id[1]


def _new_instance_id() -> str:
    try:
        host = socket.gethostname() or "agent"
    except OSError:
        host = "agent"
    host = "".join(c if 0x21 <= ord(c) <= 0x7E else "_" for c in host)
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class Backoff:
    """Exponential backoff with +-20% jitter, capped at the maximum."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi, self.cur = lo, hi, 0.0

    def reset(self) -> None:
        self.cur = 0.0

    def next(self) -> float:
        self.cur = self.lo if self.cur == 0 else min(self.cur * 2, self.hi)
        return min(self.cur * (0.8 + 0.4 * random.random()), self.hi)
