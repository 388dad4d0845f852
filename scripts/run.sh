#!/usr/bin/env bash
# Set up and run the bot: a virtualenv with the bot installed, then long polling
# on SQLite. Configuration comes from the environment or ./.env (see .env.example).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "note: ffmpeg is not installed; voice features need it (apt-get install ffmpeg)" >&2
  fi
fi
. scripts/venv.sh
ensure_venv
if [ ! -f .env ] && [ -z "${BOT_TOKEN:-}" ]; then
  echo "Set BOT_TOKEN and LLM_API_KEY in the environment or in .env (cp .env.example .env)." >&2
  exit 2
fi
exec .venv/bin/python -m bot
