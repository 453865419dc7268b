#!/usr/bin/env bash
# Arize Phoenix, the real OTLP backend of tests/test_otel_phoenix.py, in a venv of its own:
# it pins packages (anthropic among them) that the main environment must not get.
# What to install is the `phoenix` extra of pyproject.toml (arize-phoenix if it has none).
# Prints the path of its `phoenix` executable; the tests find it in AGENTLOG_PHOENIX:
#     AGENTLOG_PHOENIX="$(bash .ci/phoenix.sh)" python -m pytest -q tests/test_otel_phoenix.py
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AGENTLOG_PHOENIX_VENV:-$HOME/.cache/agentlog-phoenix-venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/phoenix" ]; then
    requirements="$("$py" - <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    extras = tomllib.load(f)["project"].get("optional-dependencies", {})
print("\n".join(extras.get("phoenix", ["arize-phoenix"])))
EOF
)"
    "$py" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    mapfile -t reqs <<<"$requirements"
    "$venv/bin/python" -m pip install -q "${reqs[@]}" >&2
fi
echo "$venv/bin/phoenix"
