"""Medians across runs, the printed table, results.json and the latency plot."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import median


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians of numbers across runs; dicts recursively; booleans must hold in every run;
    anything else (lists, strings) is listed per run."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run if k not in keys and not k.startswith("_")]
    out: dict[str, Any] = {}
    for key in keys:
        values = [run.get(key) for run in runs]
        present = [v for v in values if v is not None]
        if not present:
            out[key] = None
        elif all(isinstance(v, bool) for v in present):
            out[key] = all(present)
        elif all(isinstance(v, int | float) for v in present):
            m = median([float(v) for v in present if not math.isnan(float(v))])
            out[key] = m
        elif all(isinstance(v, dict) for v in present):
            out[key] = combine(present)
        else:
            out[key] = present[0] if len(present) == 1 else present
    return out


@dataclass(frozen=True)
class Row:
    scenario: str
    label: str
    key: str
    fmt: str = "{:.1f}"
    target: str = ""
    check: Callable[[float], bool] | None = None


ROWS = (
    Row("1", "answers/s (measured)", "answers_per_s", "{:.0f}"),
    Row("1", "bot CPU ms per answer", "cpu_ms_per_answer", "{:.2f}", "<= 3", lambda v: v <= 3),
    Row(
        "1",
        "answers/s one core could do (1/CPU)",
        "cpu_bound_answers_per_s",
        "{:.0f}",
        ">= 300",
        lambda v: v >= 300,
    ),
    Row(
        "1",
        "Telegram calls per answer",
        "telegram_calls_per_answer",
        "{:.2f}",
        "<= 4",
        lambda v: v <= 4,
    ),
    Row("1", "bot core busy", "bot_core_utilisation", "{:.0%}"),
    Row("1", "driver (fakes) core busy", "driver_core_utilisation", "{:.0%}"),
    Row("1", "bot peak RSS MB", "peak_rss_mb", "{:.0f}"),
    Row(
        "2",
        "update -> upstream start p50 ms",
        "update_to_upstream_p50_ms",
        "{:.2f}",
        "<= 5",
        lambda v: v <= 5,
    ),
    Row(
        "2",
        "update -> upstream start p99 ms",
        "update_to_upstream_p99_ms",
        "{:.2f}",
        "<= 25",
        lambda v: v <= 25,
    ),
    Row(
        "2",
        "last chunk -> final message p50 ms",
        "last_chunk_to_final_p50_ms",
        "{:.2f}",
        "<= 5",
        lambda v: v <= 5,
    ),
    Row(
        "2",
        "last chunk -> final message p99 ms",
        "last_chunk_to_final_p99_ms",
        "{:.2f}",
        "<= 25",
        lambda v: v <= 25,
    ),
    Row("2", "bot CPU ms per answer", "cpu_ms_per_answer", "{:.2f}"),
    Row(
        "3",
        "first chunk -> first draft p50 ms",
        "first_chunk_to_draft_p50_ms",
        "{:.1f}",
        "<= 50",
        lambda v: v <= 50,
    ),
    Row("3", "first chunk -> first draft p99 ms", "first_chunk_to_draft_p99_ms", "{:.1f}"),
    Row("3", "drafts per answer (1 s stream)", "drafts_per_answer", "{:.2f}"),
    Row("3", "Telegram calls per answer", "telegram_calls_per_answer", "{:.2f}"),
    Row("4", "all answered s", "all_answered_s", "{:.2f}", "<= 4", lambda v: v <= 4),
    Row("4", "last upstream start s", "last_upstream_start_s", "{:.2f}"),
    Row("4", "peak RSS MB", "peak_rss_mb", "{:.0f}", "<= 250", lambda v: v <= 250),
    Row("4", "KB per concurrent answer", "kb_per_concurrent_answer", "{:.0f}"),
    Row("5", "import floor (aiogram only) MB", "import_floor_mb", "{:.1f}"),
    Row("5", "idle RSS after start-up MB", "idle_rss_mb", "{:.1f}"),
    Row(
        "5",
        "idle RSS above import floor MB",
        "idle_above_floor_mb",
        "{:.1f}",
        "<= 15",
        lambda v: v <= 15,
    ),
    Row("5", "idle RSS on the big DB MB", "idle_rss_mb_big_db", "{:.1f}"),
    Row("5", "RSS after answers on big DB MB", "rss_mb_after_answers_big_db", "{:.1f}"),
    Row(
        "5",
        "prepare() p50 ms, 10-message history",
        "prepare_typical_p50_ms",
        "{:.2f}",
        "<= 2",
        lambda v: v <= 2,
    ),
    Row("5", "prepare() p99 ms, 10-message history", "prepare_typical_p99_ms", "{:.2f}"),
    Row(
        "5",
        "prepare() p50 ms, long history",
        "prepare_heavy_p50_ms",
        "{:.2f}",
        "(<= 2)",
        lambda v: v <= 2,
    ),
    Row("6", "recipients", "recipients", "{:.0f}"),
    Row("6", "delivered", "delivered", "{:.0f}"),
    Row("6", "achieved rate /s (configured 25)", "achieved_rate", "{:.2f}"),
    Row(
        "6",
        "off the configured rate %",
        "rate_error_pct",
        "{:.2f}",
        "<= 3",
        lambda v: v <= 3,
    ),
    Row("6", "Telegram 429s (fake enforces 30/s)", "telegram_429", "{:.0f}", "0", lambda v: v == 0),
    Row("6", "busiest second, copies", "max_per_second", "{:.0f}"),
    Row("6", "bot CPU ms per copy", "cpu_ms_per_message", "{:.2f}"),
    Row(
        "7",
        "grants the 5 others waited (max)",
        "max_grants_waited",
        "{:.0f}",
        "<= 6",
        lambda v: v <= 6,
    ),
    Row("7", "upstream 429s", "upstream_429", "{:.0f}", "0", lambda v: v == 0),
    Row("8", "messages answered", "answered", "{:.0f}"),
    Row("8", "bot CPU ms per answer", "cpu_ms_per_answer", "{:.2f}", "<= 8", lambda v: v <= 8),
    Row("8", "bot core busy", "bot_core_utilisation", "{:.0%}"),
    Row(
        "8",
        "first chunk -> first draft p50 ms",
        "first_chunk_to_draft_p50_ms",
        "{:.2f}",
        "<= 2",
        lambda v: v <= 2,
    ),
    Row(
        "8",
        "first chunk -> first draft p99 ms",
        "first_chunk_to_draft_p99_ms",
        "{:.2f}",
        "<= 10",
        lambda v: v <= 10,
    ),
    Row("8", "last chunk -> final message p99 ms", "last_chunk_to_final_p99_ms", "{:.2f}"),
    Row("8", "Telegram calls per answer", "telegram_calls_per_answer", "{:.2f}"),
    Row("8", "peak RSS MB (sampled)", "peak_rss_mb", "{:.0f}"),
    Row("9", "messages answered", "answered", "{:.0f}"),
    Row("9", "wrong final texts", "wrong_final_text", "{:.0f}", "0", lambda v: v == 0),
    Row("9", "answers/s (measured)", "answers_per_s", "{:.0f}"),
    Row("9", "bot CPU ms per answer", "cpu_ms_per_answer", "{:.2f}"),
    Row(
        "9",
        "CPU per answer / scenario 1's",
        "cpu_ratio_to_s1",
        "{:.2f}x",
        "<= 1.3x s1",
        lambda v: v <= 1.3,
    ),
    Row("9", "Telegram calls per answer", "telegram_calls_per_answer", "{:.2f}"),
    Row("9", "bot core busy", "bot_core_utilisation", "{:.0%}"),
    Row("9", "bot peak RSS MB", "peak_rss_mb", "{:.0f}"),
    Row("10", "one replica, SQLite, polling: answers/s", "one_answers_per_s", "{:.0f}"),
    Row("10", "one replica, polling: CPU ms per answer", "one_cpu_ms_per_answer", "{:.2f}"),
    Row("10", "one replica, SQLite, webhook: answers/s", "one_webhook_answers_per_s", "{:.0f}"),
    Row(
        "10",
        "one replica, webhook: CPU ms per answer",
        "one_webhook_cpu_ms_per_answer",
        "{:.2f}",
    ),
    Row("10", "two replicas, PG+Redis: answers/s", "two_answers_per_s", "{:.0f}"),
    Row("10", "two replicas: CPU ms per answer (both)", "two_cpu_ms_per_answer", "{:.2f}"),
    Row(
        "10",
        "two / one (webhook): shared state's cost",
        "cpu_ratio_two_to_one_webhook",
        "{:.2f}x",
        "<= 1.5x",
        lambda v: v <= 1.5,
    ),
    Row("10", "two / one (polling)", "cpu_ratio_two_to_one", "{:.2f}x"),
    Row("10", "limiter starts/s (LLM_RPS=10)", "limiter_starts_per_s", "{:.2f}"),
    Row("10", "limiter error %", "limiter_error_pct", "{:.1f}", "<= 3", lambda v: v <= 3),
    Row("10", "upstream 429s", "upstream_429", "{:.0f}", "0", lambda v: v == 0),
    Row("10", "fail-over: kill -> answer, s", "failover_s", "{:.2f}"),
)

TITLES = {
    "1": "1 throughput",
    "2": "2 added latency",
    "3": "3 first token",
    "4": "4 concurrency",
    "5": "5 memory",
    "6": "6 broadcast",
    "7": "7 upstream limiter",
    "8": "8 steady 30/s",
    "9": "9 s1 on GigaChat",
    "10": "10 two replicas",
}


def load_before(path: Path | None) -> dict[str, Any]:
    """The figures to show beside the new ones: {"source": str, "<scenario>": {key: value}}.
    Missing or unreadable: nothing to compare with."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<20} {'metric':<38} {'median':>10} {'before':>10}  {'target':<10} {'met':<3}",
        "-" * 97,
    ]
    for number, title in TITLES.items():
        entry = results.get(number)
        if entry is None:
            continue
        if entry.get("status"):
            lines.append(f"{title:<20} {entry['status']}")
            continue
        figures = entry["median"]
        before = entry.get("before") or {}
        first = True
        for row in (r for r in ROWS if r.scenario == number):
            value = figures.get(row.key)
            text = "n/a" if value is None else row.fmt.format(value)
            old = before.get(row.key)
            old_text = "" if not isinstance(old, int | float) else row.fmt.format(old)
            met = ""
            if row.check is not None and value is not None:
                met = "yes" if row.check(value) else "NO"
            name = title if first else ""
            first = False
            lines.append(
                f"{name:<20} {row.label:<38} {text:>10} {old_text:>10}  {row.target:<10} {met:<3}"
            )
        if number == "6":
            per_run = [
                (run.get("telegram_429"), run.get("rate_error_pct")) for run in entry["runs"]
            ]
            shown = [(n, None if e is None else round(e, 2)) for n, e in per_run]
            lines.append(f"{'':<20} {'(429s, % off the rate) per run':<38} {shown}")
        if number == "7":
            slots = [run.get("other_slots") for run in entry["runs"]]
            lines.append(f"{'':<20} {'grant slots of the 5 (per run)':<38} {slots}")
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def plot(path: Path, series: dict[str, list[float]], title: str) -> str | None:
    """An ECDF per latency series (log x). Returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no latency.png"
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    drawn = 0
    for label, values in series.items():
        data = sorted(v for v in values if v is not None and v > 0)
        if not data:
            continue
        ys = [(i + 1) / len(data) for i in range(len(data))]
        ax.step(data, ys, where="post", label=f"{label} (n={len(data)})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return "no latency samples to plot"
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("share of answers")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
