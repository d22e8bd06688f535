#!/usr/bin/env bash
# Runs the Python client check against a running cluster (e.g. `playground`).
#   PD_ENDPOINT=127.0.0.1:2379 e2e/python/run.sh
# Uses pytest when it is installed, else the script's own runner; exit codes are pytest's
# (0 passed, 1 failed, 4 usage error, 5 no tests collected).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PD_ENDPOINT="${PD_ENDPOINT:-127.0.0.1:2379}"
if ! python3 -c 'import tikv_client' 2>/dev/null; then
    echo "tikv_client is not importable: pip install tikv-client==0.0.4" >&2
    exit 4
fi
if python3 -c 'import pytest' 2>/dev/null; then
    exec python3 -m pytest -q "$here/test_client.py"
fi
exec python3 "$here/test_client.py"
