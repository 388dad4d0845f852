"""The benchmark harness still runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.__main__ import run
from benchmarks.harness import Sizes


async def test_harness_produces_a_results_dict(tmp_path: Path) -> None:
    sizes = Sizes(warm_up=1, s1_messages=4, s1_users=2, s6_recipients=20)
    payload = await run([1, 6], sizes, 1, tmp_path)
    assert isinstance(payload["results"]["1"]["median"], dict)
    assert payload["results"]["1"]["runs"][0]["answered"] == 4
    broadcast = payload["results"]["6"]["runs"][0]
    assert broadcast["delivered"] == 20 and broadcast["telegram_429"] == 0
    assert (tmp_path / "results.json").exists()
