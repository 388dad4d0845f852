"""The benchmark harness still runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.__main__ import add_ratios, run
from benchmarks.harness import Sizes


async def test_harness_produces_a_results_dict(tmp_path: Path) -> None:
    sizes = Sizes(
        warm_up=1,
        s1_messages=4,
        s1_users=2,
        s6_recipients=20,
        s8_rate=10.0,
        s8_seconds=0.5,
        s8_users=3,
        s8_chunk_delay=0.01,
    )
    payload = await run([1, 6, 8, 9], sizes, 1, tmp_path)
    assert isinstance(payload["results"]["1"]["median"], dict)
    assert payload["results"]["1"]["runs"][0]["answered"] == 4
    broadcast = payload["results"]["6"]["runs"][0]
    assert broadcast["delivered"] == 20 and broadcast["telegram_429"] == 0
    steady = payload["results"]["8"]["runs"][0]
    assert steady["messages"] == 5 and steady["all_answered"]
    assert steady["first_chunk_to_draft_p50_ms"] is not None
    assert steady["cpu_ms_per_answer"] is not None and steady["peak_rss_mb"]
    assert (tmp_path / "results.json").exists()
    # The figures before issue 12 are kept beside the new ones, scenario by scenario.
    assert payload["results"]["8"]["before"]["cpu_ms_per_answer"] > 0
    assert payload["results"]["1"]["before"]["cpu_ms_per_answer"] > 0
    assert payload["before_source"]
    assert "8 steady 30/s" in report.table(payload["results"])
    # Scenario 9 is scenario 1 answered by GigaChat alone (OAuth once, nothing refused).
    giga = payload["results"]["9"]["runs"][0]
    assert giga["answered"] == 4 and giga["wrong_final_text"] == 0
    assert giga["gigachat_chat_requests"] == 5  # the warm-up answer and the 4 measured
    assert giga["openai_chat_requests"] == 0
    assert giga["gigachat_token_requests"] == 1 and giga["gigachat_429"] == 0
    settings = payload["settings_by_run"]["s9-throughput-gigachat"]
    assert settings["DEFAULT_MODEL"] == "gigachat:GigaChat-2"
    assert settings["GIGACHAT_CREDENTIALS"] == "***"
    assert "9 s1 on GigaChat" in report.table(payload["results"])


def _entry(cpu_ms_per_answer: float | None) -> dict[str, Any]:
    return {"runs": [], "median": {"cpu_ms_per_answer": cpu_ms_per_answer}, "before": None}


def test_scenario_9_is_judged_by_its_cpu_per_answer_over_scenario_1s() -> None:
    results = {"1": _entry(2.0), "9": _entry(2.5)}
    add_ratios(results)
    assert results["9"]["median"]["cpu_ratio_to_s1"] == 1.25
    table = report.table(results)
    ratio_line = next(line for line in table.splitlines() if "scenario 1's" in line)
    assert "1.25x" in ratio_line and ratio_line.rstrip().endswith("yes")

    results["9"] = _entry(2.8)
    add_ratios(results)
    ratio_line = next(line for line in report.table(results).splitlines() if "scenario 1's" in line)
    assert ratio_line.rstrip().endswith("NO")


def test_no_ratio_without_scenario_1_or_its_figure() -> None:
    alone = {"9": _entry(2.5)}
    add_ratios(alone)
    assert "cpu_ratio_to_s1" not in alone["9"]["median"]
    unmeasured = {"1": _entry(None), "9": _entry(2.5)}
    add_ratios(unmeasured)
    assert "cpu_ratio_to_s1" not in unmeasured["9"]["median"]
