#!/usr/bin/env bash
# Make .venv (Python >= 3.12) with this project installed; reinstall only when pyproject.toml or
# infra/keras-hub.txt changes.
# Sourced by ./ser and ./run-tests. Set SER_PYTHON to choose the interpreter.
set -euo pipefail
SER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SER_VENV:-$SER_ROOT/.venv}"

find_python() {
  local candidates=("${SER_PYTHON:-}" python3.12 python3.13 python3)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.1[2-9]*/bin/python3)
  fi
  candidates+=("$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3)
  for py in "${candidates[@]}"; do
    [ -n "$py" ] || continue
    # pyenv shims exist even when their version is not selected, so run each one to be sure.
    if "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  echo "error: Python >= 3.12 not found (librosa 1.x needs it); set SER_PYTHON" >&2
  return 1
}

stamp="$VENV/.ser-install-stamp"
want="$(cat "$SER_ROOT/pyproject.toml" "$SER_ROOT/infra/keras-hub.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  py="$(find_python)"
  echo "bootstrap: creating $VENV with $py" >&2
  "$py" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing the project and its dependencies (a few minutes the first time)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet -e "$SER_ROOT[test]" >&2
  # keras-hub without its dependencies: see infra/keras-hub.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps -r "$SER_ROOT/infra/keras-hub.txt" >&2
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
