"""TLS from PEM files (docs/operations.md#security): a client certificate
accepted by a worker that requires one, and each unusable file refused by
name. Certificates are made at test time with openssl, so none is committed
to expire."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from eddy_agent import Agent, Event
from fakeworker import FakeWorker


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _issue(d: Path, ca: str, name: str, san: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / f"{name}.key"),
             "-subj", f"/CN={name}", "-out", str(d / f"{name}.csr"))
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / f"{ca}.crt"), "-CAkey", str(d / f"{ca}.key"),
             "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(d / f"{name}.crt"))


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    for ca in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                 "-subj", f"/CN={ca}", "-keyout", str(tmp_path / f"{ca}.key"), "-out", str(tmp_path / f"{ca}.crt"))
    _issue(tmp_path, "ca", "worker", "IP:127.0.0.1")
    _issue(tmp_path, "ca", "agent", "DNS:agent")
    return tmp_path


def _ok(ev: Event) -> None:
    pass


async def test_mtls_client_certificate(certs: Path) -> None:
    """An agent with tls_ca_file/tls_cert_file/tls_key_file reaches a worker
    that requires client certificates; one verifying against another CA
    does not get a session."""
    server_creds = grpc.ssl_server_credentials(
        [((certs / "worker.key").read_bytes(), (certs / "worker.crt").read_bytes())],
        root_certificates=(certs / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    fw = await FakeWorker(tls=server_creds).start()
    tasks: list[tuple[Agent, Any]] = []
    try:
        def start(ca: str) -> None:
            a = Agent("pass", _ok, app="app", addr=fw.addr, token="", backoff_min=0.01, backoff_max=0.05,
                      tls_ca_file=str(certs / f"{ca}.crt"), tls_cert_file=str(certs / "agent.crt"),
                      tls_key_file=str(certs / "agent.key"))
            tasks.append((a, asyncio.ensure_future(a.run())))

        start("other")
        with pytest.raises(asyncio.TimeoutError):
            await fw.session(timeout=1)
        start("ca")
        s = await fw.session(timeout=10)
        assert s.hello.agent == "pass"
    finally:
        for a, t in tasks:
            a.stop()
        for _, t in tasks:
            await asyncio.wait_for(t, 10)
        await fw.stop()


def test_tls_files_refused(certs: Path) -> None:
    for kw, want in (
        (dict(tls_ca_file=str(certs / "nope.crt")), "tls_ca_file: " + str(certs / "nope.crt") + ": No such file"),
        (dict(tls_ca_file=str(certs / "worker.ext")), "holds no PEM data"),
        (dict(tls_cert_file=str(certs / "agent.crt")), "tls_cert_file and tls_key_file go together"),
        (dict(tls_ca_file=str(certs / "ca.crt"), credentials=grpc.ssl_channel_credentials()), "exclude each other"),
    ):
        with pytest.raises(ValueError) as e:
            Agent("pass", _ok, app="app", **kw)  # type: ignore[arg-type]
        assert want in str(e.value), str(e.value)


@pytest.mark.timeout(150)
def test_python_agent_over_mtls_real_worker(kafka: str, bins: dict[str, str], procs: Any, certs: Path) -> None:
    """End to end: the real worker with mutual TLS and a token, a Python
    agent process with a client certificate (tls_* files) processes every
    event, read back with an independent Kafka client; an agent without a
    client certificate gets no session."""
    from harness import PASSAGENT, Reader, Worker, keyed_values, pass_app, produce, python_agent

    body, _app, tin, tout = pass_app(kafka)
    body += (f"auth: {{token: s3cret}}\ntls: {{cert_file: {certs / 'worker.crt'}, key_file: {certs / 'worker.key'}, "
             f"client_ca_file: {certs / 'ca.crt'}}}\n")
    w = procs.add(Worker(bins, body, tls=(str(certs / "ca.crt"), str(certs / "agent.crt"), str(certs / "agent.key"))).start())
    w.wait_assigned(8)
    procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--instance", "no-cert",
                           "--token", "s3cret", "--discovery", "0", "--cacert", str(certs / "ca.crt")))
    procs.add(python_agent(PASSAGENT, "--addr", w.grpc_addr, "--app", w.app, "--out", tout, "--instance", "py-mtls",
                           "--token", "s3cret", "--discovery", "0", "--cacert", str(certs / "ca.crt"),
                           "--cert", str(certs / "agent.crt"), "--key", str(certs / "agent.key")))
    info = w.wait_instances("pass", 1, 8)
    assert [i.instance_id for i in info.instances] == ["py-mtls"], info

    keys, values = keyed_values(500, 50)
    produce(kafka, tin, keys, values)
    r = Reader(kafka, tout)
    try:
        got = r.read_until(60, "every input in the output", lambda g: {x.value for x in g[tout]} >= set(values))
    finally:
        r.close()
    assert all(rec.headers.get("agent.sdk") == "python" for rec in got[tout])
    assert [i.instance_id for i in w.wait_instances("pass", 1, 8).instances] == ["py-mtls"]
