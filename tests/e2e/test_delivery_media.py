"""Delivery of media answers: a voice answer, an /image picture, a /video result reach the
user or the user is told, with Telegram refusing every attempt (`times=100` outlasts any
retry policy of the session)."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.conftest import Bench, text_of

USER = 7201
EXHAUSTED = 100


# Telegram's retries milliseconds apart: these tests use them up.
pytestmark = pytest.mark.usefixtures("fast_retries")


async def test_image_result_lost_user_told(bench: Bench) -> None:
    bench.telegram.fail_next("sendPhoto", status=502, times=EXHAUSTED, chat_id=USER)
    bench.telegram.send_message(USER, "/image a red fox")
    notice = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.ok and "did not accept" in c.params.get("text", ""), timeout=15
    )
    assert "picture" in notice[0].params["text"]
    assert not [c for c in bench.telegram.calls_of("sendPhoto") if c.ok]


async def test_image_refused_as_photo_goes_as_a_file(bench: Bench) -> None:
    bench.telegram.fail_next(
        "sendPhoto", status=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS"
    )
    bench.telegram.send_message(USER, "/image a very long panorama")
    document = await bench.telegram.wait_for("sendDocument", lambda c: c.ok, timeout=15)
    assert document[0].params["caption"] == "a very long panorama"


async def test_video_made_even_when_its_progress_message_fails(bench: Bench) -> None:
    await bench.restart(video_poll_seconds=0.1)
    bench.telegram.fail_next("sendMessage", status=500, times=EXHAUSTED, chat_id=USER)
    bench.telegram.send_message(USER, "/video a cat surfing")
    video = await bench.telegram.wait_for("sendVideo", lambda c: c.ok, timeout=20)
    assert video[0].params["caption"] == "a cat surfing"


async def test_video_upload_lost_gives_the_link(bench: Bench) -> None:
    await bench.restart(video_poll_seconds=0.1)
    bench.telegram.fail_next("sendVideo", status=502, times=EXHAUSTED, chat_id=USER)
    bench.telegram.send_message(USER, "/video a dog skating")
    link = await bench.telegram.wait_for(
        "editMessageText", lambda c: c.ok and "http" in c.params.get("text", ""), timeout=20
    )
    assert "Traceback" not in link[0].params["text"]


@pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("espeak-ng")),
    reason="ffmpeg and espeak-ng are installed by scripts/test.sh",
)
async def test_voice_answer_lost_user_told_and_gets_text(bench: Bench) -> None:
    assert bench.app is not None
    await bench.app.services.users.set_media_choice(USER, "reply_mode", "voice")
    bench.telegram.fail_next("sendVoice", status=500, times=EXHAUSTED, chat_id=USER)
    bench.telegram.send_message(USER, "say it")
    final = await bench.telegram.wait_for(
        "sendRichMessage", lambda c: c.ok and c.chat_id == USER, timeout=20
    )
    assert text_of(final[0]) == "Echo: say it"
    told = [c for c in bench.telegram.calls_of("sendMessage", chat_id=USER) if c.ok]
    assert any("couldn't voice" in c.params["text"] for c in told)
