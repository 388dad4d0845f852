"""One bot process per database (bot/instance_lock.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.instance_lock import FileInstanceLock, InstanceLocked

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    db = str(tmp_path / "bot.db")
    first, second = FileInstanceLock(db), FileInstanceLock(db)
    first.acquire()
    with pytest.raises(InstanceLocked, match=f"another bot process is already using {db}$"):
        second.acquire()
    first.acquire()  # taking it again in the same owner is harmless
    first.release()
    second.acquire()
    second.release()


def test_an_in_memory_database_needs_no_lock(tmp_path: Path) -> None:
    first, second = FileInstanceLock(":memory:"), FileInstanceLock(":memory:")
    first.acquire()
    second.acquire()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    db = str(tmp_path / "bot.db")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from bot.instance_lock import FileInstanceLock\n"
            f"lock = FileInstanceLock({db!r})\n"
            "lock.acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InstanceLocked):
            FileInstanceLock(db).acquire()
        holder.kill()  # SIGKILL: no release, no clean-up
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    lock = FileInstanceLock(db)
    lock.acquire()
    lock.release()
