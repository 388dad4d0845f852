"""Summaries of a py-spy "raw" profile (collapsed stacks: "frame;frame;... count").

Frames look like "function (package/module.py:line)"; line numbers are dropped so a function
is counted once whatever line it was on. Percentages are of the samples in which the bot was
running (py-spy leaves idle threads out), i.e. of the bot's CPU.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_LINE_RE = re.compile(r":\d+\)$")
# Leaf frames of threads that are only waiting. In blocking mode py-spy samples every thread
# whether it runs or not, so these samples are dropped: what is left is CPU.
_IDLE_LEAVES = re.compile(
    r"^(?:_worker \(concurrent/futures/thread\.py"
    r"|_connection_worker_thread \(aiosqlite/core\.py"
    r"|(?:\w+\.)?select \(selectors\.py"
    r"|(?:\w+\.)?wait \(threading\.py"
    r"|(?:\w+\.)?_wait_for_tstate_lock \(threading\.py)"
)

# Leaf-frame file prefixes → a readable owner, first match wins.
_AREAS = (
    ("bot/", "ours: bot/"),
    ("handlers/", "ours: handlers/"),
    ("services/", "ours: services/"),
    ("aiogram/", "aiogram"),
    ("pydantic", "pydantic"),
    ("aiohttp/", "aiohttp (aiogram's HTTP client)"),
    ("yarl/", "aiohttp (aiogram's HTTP client)"),
    ("multidict/", "aiohttp (aiogram's HTTP client)"),
    ("httpx/", "httpx (upstream client)"),
    ("httpcore/", "httpx (upstream client)"),
    ("h11/", "httpx (upstream client)"),
    ("aiosqlite/", "aiosqlite / sqlite3"),
    ("sqlite3/", "aiosqlite / sqlite3"),
    ("asyncio/", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("markdown_it/", "markdown-it"),
    ("magic_filter/", "magic-filter (aiogram filters)"),
    ("threading", "threads"),
    ("concurrent/", "threads"),
    ("queue", "threads"),
)


def _frame_name(frame: str) -> str:
    return _LINE_RE.sub(")", frame.strip())


def _area(frame: str) -> str:
    start = frame.rfind("(")
    path = frame[start + 1 :] if start != -1 else frame
    for prefix, name in _AREAS:
        if path.startswith(prefix):
            return name
    return "other: " + path.split("/", 1)[0].split(":", 1)[0].rstrip(")")


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if f]
        if not raw_frames:
            continue
        if _IDLE_LEAVES.match(raw_frames[-1].strip()):
            idle += count
            continue
        frames = [_frame_name(f) for f in raw_frames]
        total += count
        self_time[frames[-1]] += count
        areas[_area(frames[-1])] += count
        for name in set(frames):
            inclusive[name] += count

    def share(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "percent": round(100 * c / total, 1)}
            for name, c in counter.most_common(n)
        ]

    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "self": share(self_time, top),
        "inclusive": share(inclusive, top * 2),
        "areas": share(areas, 30),
    }


def format_summary(summary: dict[str, Any], top: int = 15) -> str:
    lines = [f"py-spy samples: {summary['samples']} (bot CPU only)", "", "Self time by area:"]
    lines += [f"  {row['percent']:5.1f}%  {row['function']}" for row in summary["areas"][:top]]
    lines += ["", "Self time by function:"]
    lines += [f"  {row['percent']:5.1f}%  {row['function']}" for row in summary["self"][:top]]
    lines += ["", "Inclusive time (ours and the big libraries' entry points):"]
    interesting = [
        row
        for row in summary["inclusive"]
        if any(p in row["function"] for p in ("bot/", "handlers/", "services/", "aiogram/"))
    ]
    lines += [f"  {row['percent']:5.1f}%  {row['function']}" for row in interesting[: top * 2]]
    return "\n".join(lines)
