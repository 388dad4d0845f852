# Sourced by run.sh and test.sh: a virtualenv in .venv with the bot installed, re-installed
# only when pyproject.toml (or the requested extras) changed since the last install. A start
# without changes spends no time in pip and needs no package registry.
# Usage: ensure_venv [extras]   e.g. ensure_venv "test"
ensure_venv() {
  local extras="${1:-}"
  local target="."
  [ -n "$extras" ] && target=".[$extras]"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  local stamp=".venv/.installed-$(echo "${extras:-base}" | tr ',' '-')"
  local want
  want="$( (cat pyproject.toml; python3 --version) | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "installing dependencies (pyproject.toml changed)"
  if ! .venv/bin/pip install -q --disable-pip-version-check -e "$target" 2>.venv/pip-error.log; then
    echo "error: could not install the dependencies (see .venv/pip-error.log)" >&2
    return 1
  fi
  echo "$want" > "$stamp"
}
