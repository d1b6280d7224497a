#!/usr/bin/env bash
# setup.sh — create bench/peers/faust/.venv and install requirements.txt.
#
# Idempotent: the stamp file .venv/.setup-stamp records a hash of
# requirements.txt (plus the interpreter version); if it matches, nothing is
# done and the script returns at once. Otherwise the venv is (re)created and
# the requirements installed. pip uses whatever index/mirror the machine's pip
# configuration names.
#
# Environment:
#   PYTHON   interpreter used to create the venv (default: python3; must be 3.11+)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.setup-stamp"
python="${PYTHON:-python3}"

want="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$req" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

echo "setup.sh: installing faust peer into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
# Fail early if the install is unusable.
"$venv/bin/python" -c 'import faust, aiokafka, uvloop, rocksdict, orjson, matplotlib' >&2
echo "$want" >"$stamp"
echo "setup.sh: done" >&2
