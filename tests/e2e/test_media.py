"""Media end to end: vision (photos, albums), voice in and out, /image, /video, /balance."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import ADMIN_ID, Bench, open_persona_form, text_of

USER = 8001
_file_ids = itertools.count(1)

needs_audio_tools = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("espeak-ng") and shutil.which("ffprobe")),
    reason="ffmpeg, ffprobe and espeak-ng are installed by scripts/test.sh",
)


def png_bytes(color: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def send_photo(
    bench: Bench,
    content: bytes,
    *,
    user: int = USER,
    caption: str | None = None,
    media_group_id: str | None = None,
    file_size: int | None = None,
    as_document: bool = False,
    chat_id: int | None = None,
) -> dict[str, Any]:
    n = next(_file_ids)
    file_id = f"photo-{n}"
    bench.telegram.add_file(file_id, content, f"photos/file_{n}.png")
    message: dict[str, Any] = {
        "message_id": 10_000 + n,
        "date": int(time.time()),
        "chat": (
            {"id": chat_id, "type": "supergroup", "title": "G"}
            if chat_id
            else {"id": user, "type": "private", "first_name": "U"}
        ),
        "from": {"id": user, "is_bot": False, "first_name": "U", "language_code": "en"},
    }
    size = file_size if file_size is not None else len(content)
    if as_document:
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": "picture.png",
            "mime_type": "image/png",
            "file_size": size,
        }
    else:
        message["photo"] = [
            {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "width": 64,
                "height": 48,
                "file_size": size,
            }
        ]
    if caption:
        message["caption"] = caption
        if caption.startswith("/"):
            command = caption.split()[0]
            message["caption_entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(command)}
            ]
        elif caption.startswith("@"):
            mention = caption.split()[0]
            message["caption_entities"] = [{"type": "mention", "offset": 0, "length": len(mention)}]
    if media_group_id:
        message["media_group_id"] = media_group_id
    return bench.telegram.push_update({"message": message})


def image_parts(request_json: dict[str, Any], index: int = -1) -> list[dict[str, Any]]:
    content = request_json["messages"][index]["content"]
    assert isinstance(content, list), content
    return content


async def test_photo_with_caption_goes_to_vision_model_and_follow_up_keeps_it(
    bench: Bench,
) -> None:
    send_photo(bench, png_bytes(), caption="What colour is this?")
    final = (await bench.telegram.wait_for("sendRichMessage", timeout=10))[0]
    request = bench.upstream.chat_requests()[-1].json
    assert request["model"] == "vis-google/gemini-flash-1.5"
    parts = image_parts(request)
    assert parts[0] == {"type": "text", "text": "What colour is this?"}
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert picture.format == "JPEG" and picture.getpixel((10, 10))[0] > 200
    assert text_of(final) == "Echo: What colour is this?"

    # A follow-up question still reaches the vision model with the image.
    await bench.ask(USER, "and is it bright?")
    follow = bench.upstream.chat_requests()[-1].json
    assert follow["model"] == "vis-google/gemini-flash-1.5"
    history_parts = image_parts(follow, 1)
    assert history_parts[0]["text"].startswith("[image]")
    assert history_parts[1]["image_url"]["url"] == url
    assert follow["messages"][-1]["content"] == "and is it bright?"

    # After /new the image is gone and text goes to the text model again.
    bench.telegram.send_message(USER, "/new")
    await bench.telegram.wait_for("sendMessage", lambda c: "New conversation" in c.params["text"])
    await bench.ask(USER, "plain text")
    assert bench.upstream.chat_requests()[-1].json["model"] == "openai/gpt-4o-mini"


async def test_image_is_reported_gone_after_a_restart(bench: Bench) -> None:
    send_photo(bench, png_bytes(), caption="remember this")
    await bench.telegram.wait_for("sendRichMessage", timeout=10)
    await bench.restart()
    await bench.ask(USER, "what was in the picture?")
    request = bench.upstream.chat_requests()[-1].json
    assert request["model"] == "openai/gpt-4o-mini"
    assert "no longer available" in request["messages"][1]["content"]
    assert request["messages"][1]["content"].startswith("[image] remember this")


async def test_album_becomes_one_request_with_all_images(bench: Bench) -> None:
    send_photo(bench, png_bytes("red"), caption="Compare these", media_group_id="album-1")
    send_photo(bench, png_bytes("green"), media_group_id="album-1")
    send_photo(bench, png_bytes("blue"), media_group_id="album-1")
    await bench.telegram.wait_for("sendRichMessage", timeout=10)
    await asyncio.sleep(0.3)
    requests = bench.upstream.chat_requests()
    assert len(requests) == 1
    parts = image_parts(requests[0].json)
    assert parts[0]["text"] == "Compare these"
    assert sum(p["type"] == "image_url" for p in parts) == 3


async def test_group_album_is_answered_only_when_its_caption_mentions_the_bot(
    bench: Bench,
) -> None:
    group = -100777
    send_photo(bench, png_bytes("red"), caption="look at these", media_group_id="g1", chat_id=group)
    send_photo(bench, png_bytes("blue"), media_group_id="g1", chat_id=group)
    await asyncio.sleep(1.5)
    assert not bench.upstream.chat_requests()

    mention = f"@{bench.telegram.bot_username} which is warmer?"
    send_photo(bench, png_bytes("red"), caption=mention, media_group_id="g2", chat_id=group)
    send_photo(bench, png_bytes("blue"), media_group_id="g2", chat_id=group)
    send_photo(bench, png_bytes("green"), media_group_id="g2", chat_id=group)
    await bench.telegram.wait_for("editMessageText", lambda c: "rich_message" in c.params)
    requests = bench.upstream.chat_requests()
    assert len(requests) == 1
    parts = image_parts(requests[0].json)
    assert parts[0]["text"] == "U: which is warmer?"
    assert sum(p["type"] == "image_url" for p in parts) == 3


async def test_photo_without_caption_is_described_and_image_documents_work(bench: Bench) -> None:
    send_photo(bench, png_bytes(), as_document=True)
    await bench.telegram.wait_for("sendRichMessage", timeout=10)
    parts = image_parts(bench.upstream.chat_requests()[-1].json)
    assert parts[0]["text"] == "Describe this image."


async def test_persona_form_takes_precedence_over_photos_and_cancel_ends_it(
    bench: Bench,
) -> None:
    # The form's router sits behind the questions and commands but before media: while the
    # bot waits for a persona, a photo is not a vision question, and /cancel still works.
    await open_persona_form(bench, USER)
    send_photo(bench, png_bytes(), caption="this is not a persona")
    await bench.telegram.wait_for("sendMessage", lambda c: "persona as text" in c.params["text"])
    bench.telegram.send_message(USER, "/cancel")
    await bench.telegram.wait_for("sendMessage", lambda c: c.params["text"] == "Cancelled.")
    assert bench.upstream.chat_requests() == []

    final = await bench.ask(USER, "a question again")
    assert text_of(final) == "Echo: a question again"


async def test_corrupt_and_oversized_images_get_clear_messages(bench: Bench) -> None:
    send_photo(bench, b"\x89PNG\r\n\x1a\nbroken", as_document=True)
    corrupt = (await bench.telegram.wait_for("sendMessage"))[0]
    assert "damaged" in corrupt.params["text"] or "read this image" in corrupt.params["text"]
    send_photo(bench, png_bytes(), file_size=25 * 1024 * 1024)
    big = (await bench.telegram.wait_for("sendMessage", count=2))[-1]
    assert "20 MB" in big.params["text"]
    assert not bench.upstream.chat_requests()


def make_voice_note(tmp: Path, text: str) -> bytes:
    wav = tmp / "speech.wav"
    ogg = tmp / "speech.ogg"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(wav),
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            str(ogg),
        ],
        check=True,
    )
    return ogg.read_bytes()


def probe(data: bytes, tmp: Path) -> dict[str, Any]:
    path = tmp / "probe.bin"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)


@needs_audio_tools
async def test_voice_note_is_transcribed_answered_and_spoken(bench: Bench, tmp_path: Path) -> None:
    bench.upstream.transcript = "what is the capital of France"
    note = make_voice_note(tmp_path, "what is the capital of France")
    bench.telegram.send_voice(USER, note, duration=2)
    voice_call = (await bench.telegram.wait_for("sendVoice", timeout=20))[0]

    stt = [r for r in bench.upstream.requests if r.path.endswith("/audio/transcriptions")]
    assert len(stt) == 1
    assert stt[0].form["model"] == "stt-openai/whisper-1"
    assert stt[0].form.get("language") == "en"
    sent_audio = next(iter(stt[0].files.values()))
    assert probe(sent_audio, tmp_path)["streams"][0]["codec_type"] == "audio"

    transcript = await bench.telegram.wait_for("sendMessage", lambda c: "🎙" in c.params["text"])
    assert "capital of France" in transcript[0].params["text"]
    chat = bench.upstream.chat_requests()[-1].json
    assert chat["messages"][-1]["content"] == "what is the capital of France"
    assert bench.upstream.speech_inputs == ["Echo: what is the capital of France."]

    _, data = voice_call.upload("voice")
    info = probe(data, tmp_path)
    assert info["format"]["format_name"] == "ogg"
    assert info["streams"][0]["codec_name"] == "opus"
    # Auto mode: a spoken question gets a spoken answer, and no text copy.
    assert not bench.telegram.calls_of("sendRichMessage", chat_id=USER)


@needs_audio_tools
async def test_reply_mode_both_sends_text_and_voice_for_text_questions(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/settings")
    menu = (await bench.telegram.wait_for("sendMessage", lambda c: "reply_markup" in c.params))[0]
    buttons = [b for row in menu.params["reply_markup"]["inline_keyboard"] for b in row]
    mode = next(b for b in buttons if "Reply mode" in b["text"])
    bench.telegram.press_button(USER, bench.telegram.sent_messages(USER)[-1], mode["callback_data"])
    picker = (await bench.telegram.wait_for("editMessageText"))[-1]
    options = [b for row in picker.params["reply_markup"]["inline_keyboard"] for b in row]
    both = next(b for b in options if "Text + voice" in b["text"])
    bench.telegram.press_button(USER, bench.telegram.sent_messages(USER)[-1], both["callback_data"])
    await bench.telegram.wait_for("editMessageText", lambda c: "Text + voice" in c.params["text"])

    bench.upstream.reply = lambda req: "## Title\n\nSome **bold** answer with `code`."
    final = await bench.ask(USER, "speak and write")
    assert "**bold**" in text_of(final)
    await bench.telegram.wait_for("sendVoice", timeout=20)
    # Markdown is stripped before speech.
    spoken = bench.upstream.speech_inputs[-1]
    assert "**" not in spoken and "#" not in spoken and "bold" in spoken


@needs_audio_tools
async def test_silent_and_corrupt_voice_get_clear_messages(bench: Bench, tmp_path: Path) -> None:
    silent = tmp_path / "silent.ogg"
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=48000:cl=mono",
            "-t",
            "2",
            "-c:a",
            "libopus",
            str(silent),
        ],
        check=True,
    )
    bench.telegram.send_voice(USER, silent.read_bytes(), duration=2)
    message = (await bench.telegram.wait_for("sendMessage", timeout=10))[0]
    assert "couldn't hear" in message.params["text"]
    bench.telegram.send_voice(USER, b"OggS-not-really-audio", duration=1)
    broken = (await bench.telegram.wait_for("sendMessage", count=2, timeout=10))[-1]
    assert "couldn't read" in broken.params["text"]
    assert not [r for r in bench.upstream.requests if "transcriptions" in r.path]


@pytest.mark.parametrize("mode", ["url", "b64_json"])
async def test_image_command_sends_the_picture(bench: Bench, mode: str) -> None:
    bench.upstream.image_mode = mode
    bench.telegram.send_message(USER, "/image 16:9 a red fox in the snow")
    photo = (await bench.telegram.wait_for("sendPhoto", timeout=10))[0]
    assert photo.params["caption"] == "a red fox in the snow"
    _, data = photo.upload("photo")
    assert Image.open(io.BytesIO(data)).format == "PNG"
    request = [r for r in bench.upstream.requests if r.path.endswith("/images/generations")][-1]
    assert request.json["model"] == "dall-e-3"
    assert request.json["size"] == "1792x1024"
    assert request.json["prompt"] == "a red fox in the snow"
    actions = bench.telegram.calls_of("sendChatAction", chat_id=USER)
    assert any(a.params["action"] == "upload_photo" for a in actions)


async def test_image_command_usage_and_refusal(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/image")
    usage = (await bench.telegram.wait_for("sendMessage"))[0]
    assert "/image" in usage.params["text"]
    bench.telegram.send_message(USER, "/image something forbidden")
    refused = (await bench.telegram.wait_for("sendMessage", count=2))[-1]
    assert "refused" in refused.params["text"]
    assert not bench.telegram.calls_of("sendPhoto")


async def test_video_survives_a_restart_mid_generation(bench: Bench) -> None:
    await bench.restart(video_poll_seconds=0.2)
    bench.upstream.video_steps = [
        "IN_QUEUE",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "COMPLETED",
    ]
    bench.telegram.send_message(USER, "/video a cat surfing a wave")
    await bench.telegram.wait_for(
        "editMessageText", lambda c: "Generating" in c.params.get("text", ""), timeout=10
    )
    request_id = next(iter(bench.upstream.video_jobs))
    assert bench.upstream.video_jobs[request_id]["prompt"] == "a cat surfing a wave"
    polls_before = bench.upstream.video_polls[request_id]
    await bench.restart()  # the bot stops mid-generation and comes back
    video = (await bench.telegram.wait_for("sendVideo", timeout=15))[0]
    assert bench.upstream.video_polls[request_id] > polls_before
    _, data = video.upload("video")
    assert data[4:8] == b"ftyp"
    assert video.params["caption"] == "a cat surfing a wave"
    await bench.telegram.wait_for("editMessageText", lambda c: "ready" in c.params["text"])


async def test_video_failure_reports_the_upstream_reason(bench: Bench) -> None:
    await bench.restart(video_poll_seconds=0.1)
    bench.upstream.video_fail_reason = "Prompt rejected by the provider"
    bench.telegram.send_message(USER, "/video something")
    failed = await bench.telegram.wait_for(
        "editMessageText",
        lambda c: "could not be generated" in c.params.get("text", ""),
        timeout=10,
    )
    assert "Prompt rejected by the provider" in failed[0].params["text"]
    assert not bench.telegram.calls_of("sendVideo")


async def test_video_from_photo_and_per_user_limit(bench: Bench) -> None:
    await bench.restart(video_poll_seconds=5, video_max_jobs_per_user=1)
    send_photo(bench, png_bytes(), caption="/video make it move")
    await bench.upstream.wait_for_requests(1, path="/v1/video/generate")
    request_id = next(iter(bench.upstream.video_jobs))
    assert bench.upstream.video_jobs[request_id]["image_url"].startswith("data:image/jpeg")
    bench.telegram.send_message(USER, "/video another one")
    refused = await bench.telegram.wait_for(
        "editMessageText", lambda c: "already have" in c.params.get("text", "")
    )
    assert "1" in refused[0].params["text"]
    assert len(bench.upstream.video_jobs) == 1


async def test_balance_for_admins_and_usage_for_everyone(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/balance")
    denied = (await bench.telegram.wait_for("sendMessage"))[0]
    assert "admins" in denied.params["text"]
    bench.telegram.send_message(ADMIN_ID, "/balance")
    shown = (await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == ADMIN_ID))[
        0
    ].params["text"]
    assert "10.75" in shown and "31 Dec 2026" in shown and "🟢 OK" in shown
    bench.upstream.balance_disabled = True
    bench.telegram.send_message(ADMIN_ID, "/balance")
    off = (await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == ADMIN_ID, count=2))[
        -1
    ]
    assert "not available" in off.params["text"] and "disabled" in off.params["text"]

    await bench.ask(USER, "count me")
    bench.telegram.send_message(USER, "/usage")
    usage = await bench.telegram.wait_for("sendMessage", lambda c: "usage" in c.params["text"])
    assert "Today: 1 request," in usage[0].params["text"]
    assert "0.01" in usage[0].params["text"]  # the upstream's x-used-credits


@needs_audio_tools
async def test_too_long_voice_is_refused_before_transcription(bench: Bench, tmp_path: Path) -> None:
    await bench.restart(max_audio_seconds=1)
    note = make_voice_note(tmp_path, "this recording is certainly longer than one second")
    bench.telegram.send_voice(USER, note, duration=3)
    message = (await bench.telegram.wait_for("sendMessage", timeout=10))[0]
    assert "too long" in message.params["text"]
    assert not [r for r in bench.upstream.requests if "transcriptions" in r.path]
