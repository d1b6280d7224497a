"""Generate the Python stubs of eddy_agent from the repository's proto/ tree.

Run by ``make proto`` with the pinned grpcio-tools of requirements-dev.txt
(its bundled protoc and Python plugins: nothing else is fetched). Output, which
is committed:

    src/eddy_agent/_gen/eddy/v1/<name>_pb2.py        messages
    src/eddy_agent/_gen/eddy/v1/<name>_pb2.pyi       their type stubs
    src/eddy_agent/_gen/eddy/v1/<name>_pb2_grpc.py   service stubs

protoc writes imports as ``from eddy.v1 import common_pb2``, which only work with
the output directory on sys.path; they are rewritten to
``from eddy_agent._gen.eddy.v1 import common_pb2`` so that the package imports
cleanly wherever it is installed.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys

SDK = pathlib.Path(__file__).resolve().parent
ROOT = SDK.parent.parent
PROTO = ROOT / "proto"
OUT = SDK / "src" / "eddy_agent" / "_gen"
PACKAGE = "eddy_agent._gen"

INIT = '"""Generated from proto/ by sdk/python/genproto.py (make proto). Do not edit."""\n'

_IMPORT = re.compile(r"^(from|import) eddy\.v1(\b)", re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    """Generate into src/eddy_agent/_gen, or into ``--out DIR`` (used by the
    test that checks the committed stubs are up to date)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT, help="output directory (default: %(default)s)")
    args = ap.parse_args(argv)
    return generate(args.out)


def generate(out: pathlib.Path) -> int:
    import grpc_tools
    from grpc_tools import protoc

    include = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
    protos = sorted(p.relative_to(PROTO).as_posix() for p in (PROTO / "eddy" / "v1").glob("*.proto"))
    if not protos:
        print(f"genproto: no .proto files under {PROTO / 'eddy' / 'v1'}", file=sys.stderr)
        return 1

    shutil.rmtree(out / "eddy", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        print(f"genproto: protoc failed with status {rc}", file=sys.stderr)
        return 1

    for pkg in (out, out / "eddy", out / "eddy" / "v1"):
        (pkg / "__init__.py").write_text(INIT)
    for path in sorted((out / "eddy" / "v1").iterdir()):
        if path.suffix not in (".py", ".pyi") or path.name == "__init__.py":
            continue
        text = path.read_text()
        fixed = _IMPORT.sub(lambda m: f"{m.group(1)} {PACKAGE}.eddy.v1{m.group(2)}", text)
        if fixed != text:
            path.write_text(fixed)
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"genproto: {len(protos)} files -> {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
