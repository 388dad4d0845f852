"""The benchmark harness still runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import report
from benchmarks.__main__ import run
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
    payload = await run([1, 6, 8], sizes, 1, tmp_path)
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
