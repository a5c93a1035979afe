#!/usr/bin/env bash
# Creates the python that `dalle bench native` uses for its numpy reference (a venv with numpy from PyPI,
# in the same cache as the native build) and prints its path. The bench finds it there by itself;
# $DALLE_PYTHON or --python override it.
set -euo pipefail
CACHE=${DALLE_NATIVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dalle-native}
NUMPY=${1:-2.4.6}
venv="$CACHE/venv"
if ! "$venv/bin/python" -c "import numpy" 2>/dev/null; then
  python3 -m venv "$venv" || { echo "bench-python: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet "numpy==$NUMPY" >&2
fi
echo "$venv/bin/python"
