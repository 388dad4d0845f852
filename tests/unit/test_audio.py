"""AudioService against real audio made on the spot with espeak-ng and ffmpeg."""

from __future__ import annotations

import array
import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.audio import AudioError, AudioProblem, AudioService, PreparedAudio

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("ffmpeg", "ffprobe", "espeak-ng")),
    reason="needs ffmpeg, ffprobe and espeak-ng",
)

PHRASE = "Hello world. This is a short voice note for the audio tests."


@dataclass(frozen=True)
class Clips:
    root: Path
    speech_seconds: float

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
    )


def probe(data: bytes, tmp_path: Path, name: str = "probe.bin") -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)


def write_wav(path: Path, samples: array.array, rate: int = 16_000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    d = tmp_path_factory.mktemp("clips")
    subprocess.run(["espeak-ng", "-w", str(d / "speech.wav"), PHRASE], check=True)
    with wave.open(str(d / "speech.wav")) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    speech = d / "speech.wav"
    # A real Telegram voice note: OGG/Opus, mono, 48 kHz.
    ffmpeg("-i", speech, "-c:a", "libopus", "-ar", "48000", "-ac", "1", d / "voice.ogg")
    ffmpeg("-i", speech, "-c:a", "libmp3lame", "-b:a", "64k", d / "speech.mp3")
    # A "video note": square video plus the speech, like Telegram's round videos.
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=duration={seconds:.3f}:size=96x96:rate=10", "-i", speech,
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", d / "video_note.mp4",
    )  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", d / "no_audio.mp4",
    )  # fmt: skip
    # Quiet but real speech: 45 dB down, peaking near -45 dBFS.
    ffmpeg("-i", speech, "-af", "volume=-45dB", "-c:a", "libopus", d / "quiet.ogg")
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "2", d / "silence.ogg")
    # Near-silence: faint hiss around -70 dBFS, as from a mic in a quiet room.
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=a=0.001:d=2:r=16000", d / "hiss.wav")
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0.05", d / "blip.wav")
    # Faint mic noise (~-76 dBFS) with a DC offset and the record button's click at both
    # ends: a bare peak meter would call this loud.
    noise = random.Random(3)
    samples = array.array("h", (round(noise.gauss(-300, 5)) for _ in range(32_000)))
    for start in (800, 30_000):
        for i in range(start, start + 40):
            samples[i] = 30_000 if i % 2 else -30_000
    write_wav(d / "clicks.wav", samples)
    # Long-ish: 240 s of a 250 Hz tone (exactly 64 samples per cycle at 16 kHz).
    cycle = array.array("h", (int(8000 * math.sin(2 * math.pi * i / 64)) for i in range(64)))
    write_wav(d / "long.wav", cycle * (250 * 240))
    return Clips(root=d, speech_seconds=seconds)


@pytest.fixture
async def service() -> AsyncIterator[AudioService]:
    audio = AudioService()
    yield audio
    await audio.close()


def ffmpeg_children() -> int:
    """ffmpeg processes started by this test process (Linux /proc)."""
    count = 0
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = stat[stat.rindex(")") + 2 :].split()[1]
        if comm == "ffmpeg" and ppid == me:
            count += 1
    return count


async def ffmpeg_started() -> None:
    # An outside process has no event to wait on: poll, for at most 5 s.
    for _ in range(500):
        if ffmpeg_children():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("ffmpeg never started")


# --- prepare_for_stt --------------------------------------------------------------------------


async def test_voice_note_becomes_small_mono_16k_mp3(
    service: AudioService, clips: Clips, tmp_path: Path
) -> None:
    prepared = await service.prepare_for_stt(clips.read("voice.ogg"), hint="ogg")
    assert isinstance(prepared, PreparedAudio)
    assert prepared.filename == "speech.mp3"
    assert prepared.duration == pytest.approx(clips.speech_seconds, abs=0.1)
    info = probe(prepared.data, tmp_path, "out.mp3")
    stream = info["streams"][0]
    assert info["format"]["format_name"] == "mp3"
    assert stream["codec_name"] == "mp3"
    assert stream["sample_rate"] == "16000"
    assert stream["channels"] == 1
    assert int(stream["bit_rate"]) == 48_000
    assert float(info["format"]["duration"]) == pytest.approx(clips.speech_seconds, abs=0.15)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("voice.ogg", None),  # no hint: ffmpeg probes
        ("speech.mp3", "mp3"),
        ("speech.wav", "wav"),
        ("video_note.mp4", "mp4"),
        ("speech.mp3", "ogg"),  # a wrong hint must not matter
        ("quiet.ogg", "ogg"),  # quiet but real speech is NOT silence
    ],
)
async def test_accepts_every_container(
    service: AudioService, clips: Clips, name: str, hint: str | None
) -> None:
    prepared = await service.prepare_for_stt(clips.read(name), hint=hint)
    assert prepared.duration == pytest.approx(clips.speech_seconds, abs=0.15)
    assert prepared.data[:3] == b"ID3" or prepared.data[0] == 0xFF  # an MP3 stream


async def test_truncated_voice_note_keeps_what_decodes(service: AudioService, clips: Clips) -> None:
    data = clips.read("voice.ogg")
    prepared = await service.prepare_for_stt(data[: len(data) // 2], hint="ogg")
    assert 0.5 < prepared.duration < clips.speech_seconds


@pytest.mark.parametrize("name", ["silence.ogg", "hiss.wav", "clicks.wav"])
async def test_silence_and_near_silence_are_silent(
    service: AudioService, clips: Clips, name: str
) -> None:
    with pytest.raises(AudioError) as caught:
        await service.prepare_for_stt(clips.read(name))
    assert caught.value.problem is AudioProblem.SILENT


@pytest.mark.parametrize(
    "data",
    [
        random.Random(7).randbytes(20_000),
        b"OggS" + random.Random(8).randbytes(300),  # a header start, then garbage
        b"this is a text file, not audio\n" * 50,
    ],
    ids=["random", "fake-ogg", "text"],
)
async def test_undecodable_bytes_are_corrupt(service: AudioService, data: bytes) -> None:
    with pytest.raises(AudioError) as caught:
        await service.prepare_for_stt(data, hint="ogg")
    assert caught.value.problem is AudioProblem.CORRUPT
    assert caught.value.detail  # ffmpeg's reason, for the logs


@pytest.mark.parametrize("name", ["", "no_audio.mp4", "blip.wav"])
async def test_nothing_to_hear_is_empty(service: AudioService, clips: Clips, name: str) -> None:
    data = clips.read(name) if name else b""
    with pytest.raises(AudioError) as caught:
        await service.prepare_for_stt(data)
    assert caught.value.problem is AudioProblem.EMPTY


async def test_too_long(clips: Clips) -> None:
    data = clips.read("voice.ogg")
    short = AudioService(max_seconds=1.0)
    try:
        with pytest.raises(AudioError) as caught:
            await short.prepare_for_stt(data, hint="ogg")
        assert caught.value.problem is AudioProblem.TOO_LONG
    finally:
        await short.close()
    fits = AudioService(max_seconds=clips.speech_seconds + 0.5)
    try:
        assert (await fits.prepare_for_stt(data, hint="ogg")).duration > 1.0
    finally:
        await fits.close()


async def test_hostile_hint_is_only_an_extension(service: AudioService, clips: Clips) -> None:
    prepared = await service.prepare_for_stt(clips.read("speech.wav"), hint="../../etc/x y")
    assert prepared.duration == pytest.approx(clips.speech_seconds, abs=0.15)


# --- to_voice ---------------------------------------------------------------------------------


async def test_to_voice_makes_one_ogg_opus_of_all_parts(
    service: AudioService, clips: Clips, tmp_path: Path
) -> None:
    first = await service.prepare_for_stt(clips.read("voice.ogg"))  # an mp3
    parts = [first.data, clips.read("speech.wav"), clips.read("speech.mp3")]
    ogg, seconds = await service.to_voice(parts)
    info = probe(ogg, tmp_path, "voice.ogg")
    assert info["format"]["format_name"] == "ogg"
    assert [s["codec_type"] for s in info["streams"]] == ["audio"]
    stream = info["streams"][0]
    assert stream["codec_name"] == "opus"
    assert stream["sample_rate"] == "48000"
    assert stream["channels"] == 1
    # Our duration is the played length; ffprobe's also counts the encoder's 6.5 ms pre-skip.
    assert seconds == pytest.approx(float(info["format"]["duration"]), abs=0.02)
    # Three parts and two short pauses; MP3s carry a few tens of ms of codec padding.
    assert seconds == pytest.approx(3 * clips.speech_seconds + 2 * 0.3, abs=0.25)
    # Small enough for a voice note: ~32 kbps.
    assert len(ogg) < seconds * 32_000 / 8 * 1.5


async def test_to_voice_single_part_round_trips(service: AudioService, clips: Clips) -> None:
    ogg, seconds = await service.to_voice([clips.read("speech.mp3")], hint="mp3")
    assert seconds == pytest.approx(clips.speech_seconds, abs=0.15)
    again = await service.prepare_for_stt(ogg, hint="ogg")  # our own voice note is accepted
    assert again.duration == pytest.approx(seconds, abs=0.1)


async def test_to_voice_rejects_nothing_and_garbage(service: AudioService, clips: Clips) -> None:
    for parts in ([], [b""]):
        with pytest.raises(AudioError) as caught:
            await service.to_voice(parts)
        assert caught.value.problem is AudioProblem.EMPTY
    with pytest.raises(AudioError) as caught:
        await service.to_voice([clips.read("speech.mp3"), b"not audio at all" * 100])
    assert caught.value.problem is AudioProblem.CORRUPT


# --- concurrency --------------------------------------------------------------------------------


async def test_event_loop_stays_responsive_during_a_long_conversion(clips: Clips) -> None:
    audio = AudioService(max_seconds=900)
    long_clip = clips.read("long.wav")
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick_task = asyncio.create_task(ticker())
    try:
        started = time.perf_counter()
        long_job = asyncio.create_task(audio.prepare_for_stt(long_clip, hint="wav"))
        await asyncio.sleep(0.05)
        # Another chat's short voice note is served while the long one converts.
        short = await audio.prepare_for_stt(clips.read("voice.ogg"), hint="ogg")
        assert not long_job.done()
        prepared = await long_job
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await tick_task
        await audio.close()
    assert short.duration == pytest.approx(clips.speech_seconds, abs=0.1)
    assert prepared.duration == pytest.approx(240.0, abs=0.01)
    assert elapsed > 0.25, "the long conversion should take a measurable time"
    assert len(gaps) >= elapsed / 0.05 * 0.6
    assert max(gaps) < 0.25, f"event loop stalled for {max(gaps):.3f} s"


async def test_cancelling_the_caller_kills_ffmpeg(clips: Clips) -> None:
    audio = AudioService(max_seconds=900)
    try:
        job = asyncio.create_task(audio.prepare_for_stt(clips.read("long.wav"), hint="wav"))
        await ffmpeg_started()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        # The worker waited for its ffmpeg to die before giving the slot back.
        assert ffmpeg_children() == 0
    finally:
        await audio.close()


async def test_close_stops_running_work_and_refuses_new(clips: Clips) -> None:
    audio = AudioService(max_seconds=900)
    job = asyncio.create_task(audio.prepare_for_stt(clips.read("long.wav"), hint="wav"))
    await ffmpeg_started()
    started = time.perf_counter()
    await audio.close()
    assert time.perf_counter() - started < 1.0
    with pytest.raises(RuntimeError):
        await job
    assert ffmpeg_children() == 0
    with pytest.raises(RuntimeError):
        await audio.prepare_for_stt(clips.read("voice.ogg"))


async def test_max_concurrent_bounds_ffmpeg_processes(clips: Clips) -> None:
    audio = AudioService(max_concurrent=1)
    data = clips.read("voice.ogg")
    most = 0
    jobs = [asyncio.create_task(audio.prepare_for_stt(data, hint="ogg")) for _ in range(3)]
    try:
        while not all(job.done() for job in jobs):
            most = max(most, ffmpeg_children())
            await asyncio.sleep(0.01)
        results = [job.result() for job in jobs]
    finally:
        await audio.close()
    assert most == 1
    assert all(r.duration == pytest.approx(clips.speech_seconds, abs=0.1) for r in results)
