"""`python -m benchmarks [--quick] [--scenario N ...] [--runs K] [--profile]`

Runs the scenarios of issues 4 and 12 against the real bot (its own process, built by
`bot.factory.build_app`, SQLite on disk) with the fake Telegram and fake upstreams of the
end-to-end tests on loopback, prints a table and writes benchmarks/results.json and
benchmarks/latency.png. Every figure is the median of K runs (default 3; --quick: 1 run
with smaller sizes). --profile adds one extra, separately reported run of scenarios 1, 4, 8,
9 and 10 (those selected) with py-spy attached to the bot and writes
benchmarks/out/profile-s{1,4,8,9,10}.{raw,txt} (scenario 10: a replica of phase 2, and of
phase 1b in profile-s10-webhook.raw). The figures of benchmarks/before.json (the
stack before issue 12) are written beside each scenario's medians as "before".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import report, scale_out, scenarios
from benchmarks.harness import BASE_SETTINGS, FULL, QUICK, Context, Profiler, Sizes
from benchmarks.procstat import cpu_plan, machine_info, pin
from benchmarks.profile import format_summary, summarize
from benchmarks.timed_fakes import TimedGigaChat, TimedTelegram, TimedUpstream

HERE = Path(__file__).resolve().parent
ALL = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
# Scenarios answered by the GigaChat fake: it is started only when one of them runs.
GIGACHAT_SCENARIOS = frozenset({9})
# The scenarios --profile runs once more with py-spy attached, and how.
PROFILED: dict[int, Callable[..., Awaitable[dict[str, Any]]]] = {
    1: scenarios.throughput,
    4: scenarios.concurrency,
    8: scenarios.steady_ceiling,
    9: scenarios.throughput_gigachat,
    10: scale_out.scale_out,
}
BEFORE = HERE / "before.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="one run, smaller sizes (~2 min)")
    parser.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=ALL,
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per scenario (median); 0 with --profile: only the profiled run",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the bot in scenarios 1, 4, 8, 9 and 10 (py-spy)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=BEFORE,
        help="figures to show beside the new ones (default: benchmarks/before.json)",
    )
    parser.add_argument(
        "--output", type=Path, default=HERE, help="where results.json and latency.png go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, DBs)")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _run_scenario(number: int, ctx: Context, big: scenarios.BigDbCache) -> dict[str, Any]:
    if number == 1:
        return await scenarios.throughput(ctx)
    if number == 2:
        return await scenarios.added_latency(ctx)
    if number == 3:
        return await scenarios.first_draft(ctx)
    if number == 4:
        return await scenarios.concurrency(ctx)
    if number == 5:
        return await scenarios.memory(ctx, big)
    if number == 6:
        return await scenarios.broadcast(ctx)
    if number == 7:
        return await scenarios.limiter(ctx)
    if number == 8:
        return await scenarios.steady_ceiling(ctx)
    if number == 9:
        return await scenarios.throughput_gigachat(ctx)
    if number == 10:
        return await scale_out.scale_out(ctx)
    raise ValueError(number)


async def run(
    selected: list[int],
    sizes: Sizes,
    runs: int,
    output: Path,
    *,
    profile: bool = False,
    keep: bool = False,
    mode: str = "custom",
    before: Path | None = BEFORE,
) -> dict[str, Any]:
    """Run the scenarios, write results.json and latency.png into `output`, return the
    payload written."""
    driver_cpu, bot_cpu = cpu_plan()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pinned = pin(0, driver_cpu)
    workdir = Path(tempfile.mkdtemp(prefix="llm-bot-bench-"))
    output.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    started = time.monotonic()
    _log(
        f"work dir {workdir}; driver on CPU {driver_cpu}, bot on CPU {bot_cpu}"
        f"{'' if pinned else ' (pinning unavailable)'}; {runs} run(s) per scenario"
    )

    telegram, upstream = TimedTelegram(), TimedUpstream()
    gigachat = TimedGigaChat() if GIGACHAT_SCENARIOS.intersection(selected) else None
    await telegram.start()
    await upstream.start()
    if gigachat is not None:
        await gigachat.start()
    ctx = Context(telegram, upstream, workdir, sizes, driver_cpu, bot_cpu, gigachat=gigachat)
    big = scenarios.BigDbCache()
    baseline = report.load_before(before)
    results: dict[str, Any] = {}
    samples: dict[str, list[float]] = {}
    profiled: dict[str, Any] | None = None
    try:
        for number in selected:
            run_results = []
            for k in range(runs):
                _log(f"scenario {number}, run {k + 1}/{runs}")
                result = await _run_scenario(number, ctx, big)
                for name, values in result.pop("_samples", {}).items():
                    samples.setdefault(name, []).extend(v for v in values if v is not None)
                run_results.append(result)
            results[str(number)] = {
                "runs": run_results,
                "median": report.combine(run_results),
                "before": baseline.get(str(number)),
            }
        add_ratios(results)
        if profile:
            profiled = {str(n): await _profile(ctx, output, n) for n in selected if n in PROFILED}
    finally:
        await telegram.stop()
        await upstream.stop()
        if gigachat is not None:
            await gigachat.stop()
        if affinity is not None and pinned:
            os.sched_setaffinity(0, affinity)  # the caller may be a test process
        if keep:
            _log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    notes = _notes(results)
    plot_note = report.plot(
        output / "latency.png",
        {
            "update -> upstream start (2)": samples.get("update_to_upstream_ms", []),
            "last chunk -> final message (2)": samples.get("last_chunk_to_final_ms", []),
            "first chunk -> first draft (3)": samples.get("first_chunk_to_draft_ms", []),
            "first chunk -> first draft, 30/s (8)": samples.get("first_chunk_to_draft_ms_s8", []),
        },
        "Bot-added latency, loopback fakes, bot pinned to one core",
    )
    if plot_note:
        notes.append(plot_note)
    payload = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "mode": mode,
        "runs_per_scenario": runs,
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {**machine_info(), "driver_cpu": driver_cpu, "bot_cpu": bot_cpu},
        "sizes": asdict(sizes),
        "base_settings": BASE_SETTINGS,
        "settings_by_run": ctx.settings_used,
        "notes": notes,
        "results": results,
        "samples_ms": {k: [round(v, 3) for v in vs] for k, vs in samples.items()},
        "profile": profiled,
        "before_source": baseline.get("source"),
    }
    report.write_json(output / "results.json", payload)
    return payload


async def main_async(args: argparse.Namespace) -> int:
    payload = await run(
        sorted(set(args.scenario or ALL)),
        QUICK if args.quick else FULL,
        args.runs if args.runs is not None else (1 if args.quick else 3),
        args.output,
        profile=args.profile,
        keep=args.keep,
        mode="quick" if args.quick else "full",
        before=args.before,
    )
    print(report.table(payload["results"]))
    if payload["before_source"]:
        print(f"before: {payload['before_source']}")
    for note in payload["notes"]:
        print(f"note: {note}")
    for number, profiled in (payload["profile"] or {}).items():
        print(f"\nscenario {number}, profiled:")
        print(profiled.get("text") or profiled)
    _log(f"done in {payload['duration_s']} s; wrote {args.output / 'results.json'}")
    return 0


async def _profile(ctx: Context, output: Path, number: int) -> dict[str, Any]:
    if not Profiler.available():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out_dir = output / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"profile-s{number}.raw"
    _log(f"scenario {number} with py-spy attached (not part of the medians)")
    figures = await PROFILED[number](ctx, profile_out=raw)
    figures.pop("_samples", None)
    if not raw.exists():
        return {"error": "py-spy wrote nothing", "log": figures.get("profiler_log")}
    summary = summarize(raw)
    text = format_summary(summary)
    (out_dir / f"profile-s{number}.txt").write_text(text + "\n", encoding="utf-8")
    return {"figures_while_profiled": figures, "summary": summary, "text": text}


def add_ratios(results: dict[str, Any]) -> None:
    """Scenario 9's CPU per answer over scenario 1's, both medians of this invocation (the
    same machine, minutes apart): the figure the GigaChat path is judged by."""
    s1, s9 = results.get("1"), results.get("9")
    if s1 is None or s9 is None:
        return
    ratio = scenarios.cpu_ratio(s9["median"], s1["median"])
    if ratio is not None:
        s9["median"]["cpu_ratio_to_s1"] = ratio


def _notes(results: dict[str, Any]) -> list[str]:
    notes = [
        "Scenarios 1-4, 8 and 9 run with TELEGRAM_GLOBAL_RPS=TELEGRAM_CHAT_RPS=100000: the bot's "
        "outbound pacing (default 30/s) would otherwise cap throughput at 30 answers/s. The fake "
        "Telegram server does not enforce limits in any scenario.",
    ]
    if "9" in results and "1" not in results:
        notes.append(
            "Scenario 9 ran without scenario 1 in this invocation: no CPU ratio to it "
            "(run --scenario 1 --scenario 9)."
        )
    s1 = results.get("1", {}).get("median")
    if s1:
        driver, bot = s1.get("driver_core_utilisation"), s1.get("bot_core_utilisation")
        if driver is not None and bot is not None:
            if driver >= 0.85 and bot < 0.85:
                notes.append(
                    f"Scenario 1: the fakes were the bottleneck (driver core {driver:.0%} busy, "
                    f"bot core {bot:.0%}): measured answers/s understates the bot; "
                    "CPU ms per answer and 1/CPU are the bot's own figures."
                )
            elif bot >= 0.85:
                notes.append(
                    f"Scenario 1: the bot's core was the bottleneck ({bot:.0%} busy; "
                    f"driver {driver:.0%})."
                )
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
