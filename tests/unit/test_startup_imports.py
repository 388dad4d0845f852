"""What starting the bot loads: heavy libraries only used by some features stay unloaded."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_bot_does_not_load_pillow() -> None:
    # Pillow is ~2 MB of RSS; it is loaded with the first image a user sends.
    code = "import sys, bot.factory, bot.__main__; print('PIL' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_providers_that_are_not_configured_are_not_loaded() -> None:
    code = (
        "import sys, bot.factory, bot.__main__; "
        "print(any(m.startswith(('services.llm.gigachat', 'services.llm.mashagpt')) "
        "for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
