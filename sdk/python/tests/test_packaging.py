"""The package as users get it: committed stubs match proto/, and a built
wheel holds everything and imports cleanly on its own."""

from __future__ import annotations

import email
import filecmp
import pathlib
import re
import shutil
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


BUILD_OUTPUT = ("build", "dist", "src/eddy_agent.egg-info")


def _build_wheel(out: pathlib.Path) -> pathlib.Path:
    """Build the wheel from a copy of the sources, as a package index's
    builder would from an sdist: setuptools writes build/ and *.egg-info
    where it builds, and that must not be the source tree."""
    src = out / "src-copy"
    shutil.copytree(
        SDK, src, ignore=shutil.ignore_patterns(".venv", ".pytest_cache", "__pycache__", "tests", *BUILD_OUTPUT)
    )
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("eddy_agent-*.whl")
    return wheel


def test_no_build_output_in_the_source_tree(tmp_path: pathlib.Path) -> None:
    """Building the package (this module does) leaves the source tree as it
    was: no build/, dist/ or egg-info next to the sources."""
    _build_wheel(tmp_path)
    left = [d for d in BUILD_OUTPUT if (SDK / d).exists()]
    assert not left, f"build output in sdk/python: {left}"


def test_metadata_licence_and_links(tmp_path: pathlib.Path) -> None:
    """The wheel's metadata names the licence and carries its text, and the
    README (the package index's page) links only to absolute addresses:
    relative links to the repository's docs would be dead there."""
    wheel = _build_wheel(tmp_path)
    z = zipfile.ZipFile(wheel)
    (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
    meta = email.message_from_bytes(z.read(meta_name))
    assert meta["License-Expression"] == "Apache-2.0", meta.items()
    assert "LICENSE" in meta.get_all("License-File", []), meta.items()
    (lic,) = [n for n in z.namelist() if n.endswith("/licenses/LICENSE")]
    assert z.read(lic) == (SDK.parent.parent / "LICENSE").read_bytes()
    assert any(u.startswith("Source, https://") for u in meta.get_all("Project-URL", [])), meta.items()
    readme = (SDK / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links, "the README links nowhere"
    relative = [u for u in links if not u.startswith(("https://", "#"))]
    assert not relative, f"links that break on a package index: {relative}"


def test_wheel_contents_and_clean_import(tmp_path: pathlib.Path) -> None:
    wheel = _build_wheel(tmp_path)
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
