"""The package as users get it: committed stubs match proto/, and a built
wheel holds everything and imports cleanly on its own."""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys
import zipfile

import pytest

SDK = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


def _files(d: pathlib.Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_committed_stubs_match_proto(tmp_path: pathlib.Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SDK / "genproto.py"), "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    committed = SDK / "src" / "eddy_agent" / "_gen"
    assert _files(tmp_path) == _files(committed), "run `make proto`"
    for f in sorted(_files(tmp_path)):
        assert filecmp.cmp(tmp_path / f, committed / f, shallow=False), f"{f} is stale: run `make proto`"


def test_wheel_contents_and_clean_import(tmp_path: pathlib.Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(SDK)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("eddy_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in (
        "eddy_agent/__init__.py",
        "eddy_agent/py.typed",
        "eddy_agent/_gen/eddy/v1/agent_pb2.py",
        "eddy_agent/_gen/eddy/v1/agent_pb2.pyi",
        "eddy_agent/_gen/eddy/v1/agent_pb2_grpc.py",
        "eddy_agent/_gen/eddy/v1/common_pb2.py",
    ):
        assert want in names, f"{want} missing from {wheel.name}"
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]

    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import eddy_agent, eddy_agent._gen.eddy.v1.agent_pb2_grpc as g;"
        "assert eddy_agent.__file__.startswith(sys.argv[1]), eddy_agent.__file__;"
        "from eddy_agent import App, Event, Retry, DeadLetter;"
        "print(g.AgentServiceStub.__name__)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "AgentServiceStub"
