#!/usr/bin/env bash
# Creates (idempotently) .venv at the repo root holding moto's S3 server, which
# the S3 conformance tests start (tests/support/s3.rs looks for
# .venv/bin/moto_server). Pinned: the tests rely on moto honouring
# If-None-Match on PutObject, which older releases ignore.
set -euo pipefail

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/moto_server" ] &&
    "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
    echo "moto $MOTO_VERSION already in $VENV"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION"
"$VENV/bin/moto_server" --help >/dev/null
echo "moto $MOTO_VERSION installed in $VENV"
