"""What the kernel knows about a process, and what the report says about the machine.

CPU time is read from /proc/<pid>/stat (utime + stime: every thread of the process, so
aiosqlite's worker thread counts too); memory from /proc/<pid>/status (VmRSS now, VmHWM the
peak since the process started). Linux only; elsewhere the figures are reported as missing.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

PACKAGES = (
    "aiogram",
    "aiohttp",
    "httpx",
    "httpx-aiohttp",
    "aiohttp-socks",
    "uvloop",
    "aiosqlite",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "markdown-it-py",
    "magic-filter",
    "matplotlib",
    "py-spy",
)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds consumed so far by all threads of `pid`."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mb(pid: int) -> dict[str, float]:
    """{"rss": VmRSS, "peak": VmHWM} in MiB (empty when /proc is not available)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss"] = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    out["peak"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def pin(pid: int, cpu: int | None) -> bool:
    """Pin `pid` (0 = this process) to one CPU where the OS allows it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(pid, {cpu})
    except OSError:
        return False
    return True


def cpu_plan() -> tuple[int | None, int | None]:
    """(driver CPU, bot CPU): two different cores when there are at least two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
    }
