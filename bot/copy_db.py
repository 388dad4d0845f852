"""`python -m bot.copy_db --from sqlite:///data/bot.db --to postgresql://…`: move a bot's
SQLite database into an empty PostgreSQL database (services/storage/copy.py), keeping users,
histories, settings, usage, jobs, broadcasts, the update journal and the access list.

Stop the bot first: the SQLite side takes the bot's instance lock, so a bot still running on
that file makes the copy stop with exit code 2. Prints the rows copied per table. Exit codes:
0 copied, 1 failed (nothing written), 2 bad arguments, the bot still running or a non-empty
target. URLs are never printed (they may carry a password).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import asyncpg

from bot.instance_lock import InstanceLocked, instance_lock_for
from services.storage import SchemaTooNew, database_kind, postgres_dsn, sqlite_path_from_url
from services.storage.copy import TargetNotEmpty, copy_sqlite_to_postgres


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.copy_db",
        description="Copy the bot's SQLite database into an empty PostgreSQL database.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        help="sqlite:///path/to/bot.db (the old DATABASE_URL)",
    )
    parser.add_argument(
        "--to", dest="target", required=True, help="postgresql://user:password@host:port/database"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if database_kind(args.source) != "sqlite":
            raise ValueError("--from must be an SQLite URL (sqlite:///path/to/bot.db)")
        if database_kind(args.target) != "postgres":
            raise ValueError("--to must be a PostgreSQL URL (postgresql://…/database)")
        source = sqlite_path_from_url(args.source)
        target = postgres_dsn(args.target)
        if source == ":memory:":
            raise ValueError("--from must name an SQLite file")
    except ValueError as error:
        print(f"copy_db: {error}", file=sys.stderr)
        return 2
    lock = instance_lock_for(args.source)
    try:
        lock.acquire()
    except InstanceLocked as error:
        print(f"copy_db: stop the bot first: {error}", file=sys.stderr)
        return 2
    try:
        copied = asyncio.run(copy_sqlite_to_postgres(source, target))
    except (TargetNotEmpty, SchemaTooNew) as error:
        print(f"copy_db: {error}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as error:
        print(f"copy_db: failed, nothing copied: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    width = max(len(c.table) for c in copied)
    for item in copied:
        print(f"{item.table:<{width}}  {item.rows}")
    print(f"copied {sum(c.rows for c in copied)} rows into PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
