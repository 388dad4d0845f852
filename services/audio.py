"""Audio plumbing for voice messages: prepare uploads for speech-to-text, build voice notes.

All decoding and encoding is done by the ffmpeg binary; the Python side only moves bytes
and measures loudness (pydub). Each operation runs as ONE worker thread (asyncio.to_thread)
holding a slot of a semaphore, so a ten-minute file never blocks the event loop and at most
`max_concurrent` ffmpeg jobs compete for the CPU. A cancelled caller (or close()) kills its
ffmpeg process at once instead of letting an abandoned conversion run to the end.

Inputs go through a temporary file, not a pipe: MP4/M4A files often keep their index (moov)
at the end, which ffmpeg can only reach by seeking.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

with warnings.catch_warnings():
    # pydub imports the stdlib audioop, which warns on 3.11-3.12 (pydub switches to
    # audioop-lts itself on 3.13+). Not actionable here, and it would show on every start.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub import AudioSegment
    from pydub.utils import make_chunks

A = TypeVar("A")
R = TypeVar("R")

# Speech-to-text input: Whisper resamples to 16 kHz mono anyway, so anything richer is
# upload time for nothing; 48 kbps MP3 keeps 10 minutes under 4 MB (APIs cap at 25 MB).
_STT_RATE = 16_000
_STT_BITRATE = "48k"
_STT_FILENAME = "speech.mp3"
_PCM_BYTES_PER_SECOND = _STT_RATE * 2  # s16le mono
# OpenAI rejects clips under 0.1 s ("audio_too_short"); nothing shorter is speech anyway.
_MIN_SECONDS = 0.1

# Silence detection. The brief's rule is "peak below about -50 dBFS", and it stays: quiet
# speech peaking above that is never called silent. But a bare peak is fooled by the click
# of the record button or by a DC offset, so a second test looks at the loudest 50 ms
# windows (each with its DC removed), skipping the few loudest (≤ 0.2 s of transients).
# Speech's loudest windows sit ~14 dB under its peak (measured on espeak-ng speech), so
# -70 dBFS there leaves a wide margin below any speech the peak rule lets through.
_SILENT_PEAK_DBFS = -50.0
_SILENT_LEVEL_DBFS = -70.0
_WINDOW_MS = 50
_TRANSIENT_WINDOWS = 4

# Telegram shows OGG/Opus sent with sendVoice as a voice note. 48 kHz is Opus' native
# rate; 32 kbps is plenty for mono speech and keeps a minute under 250 KB.
_VOICE_RATE = 48_000
_VOICE_BITRATE = "32k"
_VOICE_PAUSE_SECONDS = 0.3

_SUFFIX_RE = re.compile(r"[a-z0-9]{1,8}")
_STDERR_TAIL = 500


class AudioProblem(StrEnum):
    EMPTY = "empty"  # no bytes, no audio track, or (almost) zero duration
    SILENT = "silent"  # decodes fine but nothing audible
    CORRUPT = "corrupt"  # ffmpeg cannot decode it (or gave up)
    TOO_LONG = "too_long"  # longer than max_seconds


class AudioError(Exception):
    """A user-facing problem with the audio itself; `detail` is for logs only."""

    def __init__(self, problem: AudioProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PreparedAudio:
    data: bytes
    filename: str
    duration: float  # seconds of decoded audio


class _Stopped(Exception):
    """Raised inside a worker thread whose caller was cancelled or whose service closed."""


class _Job:
    """One operation's worker thread and the ffmpeg process it is waiting on, if any.

    The event loop and the worker touch `_proc`/`_stopped` under a lock so a stop request
    can never slip in between the check and the spawn of the next process.
    """

    def __init__(self, ffmpeg: str, timeout: float) -> None:
        self._ffmpeg = ffmpeg
        self._timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._proc is not None:
                self._proc.kill()

    def ffmpeg(self, args: Sequence[str], stdin: bytes | None = None) -> tuple[int, bytes, str]:
        """Run ffmpeg to completion in this (worker) thread: (returncode, stdout, stderr)."""
        with self._lock:
            if self._stopped:
                raise _Stopped
            try:
                proc = subprocess.Popen(
                    [self._ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *args],
                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except FileNotFoundError as exc:
                raise RuntimeError(f"ffmpeg not found ({self._ffmpeg!r}); install it") from exc
            self._proc = proc
        try:
            out, err = proc.communicate(stdin, timeout=self._timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise AudioError(
                AudioProblem.CORRUPT, f"ffmpeg gave up after {self._timeout:.0f} s"
            ) from exc
        finally:
            with self._lock:
                self._proc = None
        if self._stopped:
            raise _Stopped
        return proc.returncode, out, err.decode("utf-8", "replace")[-_STDERR_TAIL:].strip()


class AudioService:
    def __init__(
        self,
        *,
        max_seconds: float = 600.0,
        max_concurrent: int = 2,
        timeout: float = 120.0,
        ffmpeg: str = "ffmpeg",
    ) -> None:
        """`timeout` bounds each ffmpeg run (a hostile file must not hold a slot forever)."""
        if max_seconds <= 0 or max_concurrent < 1 or timeout <= 0:
            raise ValueError("max_seconds, max_concurrent and timeout must be positive")
        self._max_seconds = max_seconds
        self._timeout = timeout
        self._ffmpeg = shutil.which(ffmpeg) or ffmpeg
        self._slots = asyncio.Semaphore(max_concurrent)
        self._running: dict[_Job, asyncio.Future[Any]] = {}
        self._closed = False

    @property
    def available(self) -> bool:
        """Whether the ffmpeg binary was found (for a start-up warning, not a hard failure)."""
        return shutil.which(self._ffmpeg) is not None

    async def prepare_for_stt(self, data: bytes, *, hint: str | None = None) -> PreparedAudio:
        """Decode any voice note/audio/video note into a small mono MP3 for speech-to-text.

        `hint` is the container as Telegram reports it ("ogg", "mp3", "m4a", "mp4", "wav"):
        only a file-name extension for ffmpeg's probe, which still trusts the content.
        Raises AudioError with EMPTY, CORRUPT, TOO_LONG or SILENT.
        """
        if not data:
            raise AudioError(AudioProblem.EMPTY, "no bytes")
        return await self._run(self._prepare_sync, data, _suffix(hint))

    async def to_voice(
        self, parts: Sequence[bytes], *, hint: str | None = None
    ) -> tuple[bytes, float]:
        """Join speech parts (mp3/wav/…) with a short pause into ONE OGG/Opus voice note.

        Returns (ogg bytes, duration in seconds). Empty parts are skipped; no audio at all
        raises AudioError(EMPTY), an undecodable part AudioError(CORRUPT).
        """
        chunks = [bytes(part) for part in parts if part]
        if not chunks:
            raise AudioError(AudioProblem.EMPTY, "no audio parts")
        return await self._run(self._voice_sync, chunks, _suffix(hint))

    async def close(self) -> None:
        """Stop accepting work and kill running conversions (their callers get RuntimeError)."""
        self._closed = True
        for job in list(self._running):
            job.stop()
        if self._running:
            await asyncio.wait(list(self._running.values()))

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[[_Job, A, str], R], arg: A, suffix: str) -> R:
        async with self._slots:
            if self._closed:
                raise RuntimeError("AudioService is closed")
            job = _Job(self._ffmpeg, self._timeout)
            worker = asyncio.ensure_future(asyncio.to_thread(fn, job, arg, suffix))
            self._running[job] = worker
            try:
                # shield: cancelling the caller must not abandon the thread with the slot
                # released; kill its ffmpeg and keep the slot until the thread has stopped.
                return await asyncio.shield(worker)
            except asyncio.CancelledError:
                job.stop()
                await asyncio.wait([worker])
                raise
            except _Stopped:
                raise RuntimeError("AudioService is closed") from None
            finally:
                del self._running[job]

    def _prepare_sync(self, job: _Job, data: bytes, suffix: str) -> PreparedAudio:
        with tempfile.TemporaryDirectory(prefix="llmbot-audio-") as tmp:
            source = Path(tmp) / f"input.{suffix}"
            target = Path(tmp) / _STT_FILENAME
            source.write_bytes(data)
            # ONE ffmpeg decodes once and writes both the MP3 and raw PCM for measuring:
            # starting ffmpeg costs ~70 ms, as much as converting a 10 s note. Decoding
            # stops after max_seconds + 1 s, so a three-hour upload costs no more than a
            # maximal one. The MP3 goes to a file so it gets its LAME header (exact length).
            limit = f"{self._max_seconds + 1:.3f}"
            mono = [
                "-map", "0:a:0", "-vn", "-sn", "-dn", "-t", limit, "-ac", "1", "-ar", str(_STT_RATE)
            ]  # fmt: skip
            args = [
                "-i", str(source),
                *mono, "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1",
                *mono, "-c:a", "libmp3lame", "-b:a", _STT_BITRATE, "-f", "mp3", str(target),
            ]  # fmt: skip
            code, pcm, err = job.ffmpeg(args)
            if code != 0:
                if "matches no streams" in err:
                    raise AudioError(AudioProblem.EMPTY, "no audio track")
                raise AudioError(AudioProblem.CORRUPT, err or f"ffmpeg exit code {code}")
            duration = len(pcm) / _PCM_BYTES_PER_SECOND
            if duration < _MIN_SECONDS:
                raise AudioError(AudioProblem.EMPTY, f"{duration:.3f} s of audio")
            if duration > self._max_seconds:
                raise AudioError(AudioProblem.TOO_LONG, f"longer than {self._max_seconds:g} s")
            peak, level = _loudness(pcm, _STT_RATE)
            if _is_silent(peak, level):
                raise AudioError(
                    AudioProblem.SILENT, f"peak {peak:.1f} dBFS, level {level:.1f} dBFS"
                )
            return PreparedAudio(
                data=target.read_bytes(), filename=_STT_FILENAME, duration=duration
            )

    def _voice_sync(self, job: _Job, parts: list[bytes], suffix: str) -> tuple[bytes, float]:
        with tempfile.TemporaryDirectory(prefix="llmbot-voice-") as tmp:
            args: list[str] = []
            for index, part in enumerate(parts):
                path = Path(tmp) / f"part{index}.{suffix}"
                path.write_bytes(part)
                args += ["-i", str(path)]
            # Every part is brought to one format first (concat needs identical inputs);
            # all but the last get a pause appended so sentences do not run together.
            chains = []
            for index in range(len(parts)):
                chain = f"[{index}:a:0]aformat=sample_rates={_VOICE_RATE}:channel_layouts=mono"
                if index < len(parts) - 1:
                    chain += f",apad=pad_dur={_VOICE_PAUSE_SECONDS}"
                chains.append(f"{chain}[p{index}]")
            inputs = "".join(f"[p{index}]" for index in range(len(parts)))
            graph = ";".join([*chains, f"{inputs}concat=n={len(parts)}:v=0:a=1[voice]"])
            encode = [
                *args,
                "-filter_complex", graph, "-map", "[voice]",
                "-c:a", "libopus", "-b:a", _VOICE_BITRATE, "-application", "voip",
                "-ac", "1", "-ar", str(_VOICE_RATE), "-f", "ogg", "pipe:1",
            ]  # fmt: skip
            code, ogg, err = job.ffmpeg(encode)
        if code != 0 or not ogg:
            raise AudioError(AudioProblem.CORRUPT, err or f"ffmpeg exit code {code}")
        duration = _ogg_opus_duration(ogg)
        if duration <= 0:
            raise AudioError(AudioProblem.EMPTY, "the parts hold no audio")
        return ogg, duration


def _suffix(hint: str | None) -> str:
    """A safe file-name extension from a caller's hint (it ends up in a path)."""
    cleaned = (hint or "").strip().lower().lstrip(".")
    return cleaned if _SUFFIX_RE.fullmatch(cleaned) else "bin"


def _loudness(pcm: bytes, rate: int) -> tuple[float, float]:
    """(peak dBFS, sustained level dBFS) of mono s16le PCM; -inf for digital silence.

    The level is the RMS of the loudest 50 ms window once the few loudest windows (clicks,
    pops) are skipped, with each window's DC offset removed (cheap mics idle off-zero).
    """
    segment = AudioSegment(data=pcm, sample_width=2, frame_rate=rate, channels=1)
    full_scale = segment.max_possible_amplitude
    levels = []
    for window in make_chunks(segment, _WINDOW_MS):
        dc = window.get_dc_offset() * full_scale
        ac = math.sqrt(max(window.rms**2 - dc * dc, 0.0))
        levels.append(ac)
    if not levels:
        return -math.inf, -math.inf
    levels.sort(reverse=True)
    skip = min(_TRANSIENT_WINDOWS, len(levels) // 4)
    return segment.max_dBFS, _dbfs(levels[skip], full_scale)


def _is_silent(peak_dbfs: float, level_dbfs: float) -> bool:
    return peak_dbfs < _SILENT_PEAK_DBFS or level_dbfs < _SILENT_LEVEL_DBFS


def _dbfs(amplitude: float, full_scale: float) -> float:
    return 20 * math.log10(amplitude / full_scale) if amplitude > 0 else -math.inf


def _ogg_opus_duration(data: bytes) -> float:
    """Playback seconds of an OGG/Opus file, from its last granule position.

    Opus granules always count 48 kHz samples; the encoder's pre-skip (in OpusHead) is not
    played. Walking the page headers is exact and cheaper than another ffprobe process.
    """
    pos = 0
    pre_skip = 0
    last_granule = 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise AudioError(AudioProblem.CORRUPT, f"bad OGG page at byte {pos}")
        segments = data[pos + 26]
        body = pos + 27 + segments
        if body > len(data):
            break
        granule = int.from_bytes(data[pos + 6 : pos + 14], "little", signed=True)
        if data[body : body + 8] == b"OpusHead":
            pre_skip = int.from_bytes(data[body + 10 : body + 12], "little")
        elif granule >= 0:  # -1: no packet ends on this page
            last_granule = granule
        pos = body + sum(data[pos + 27 : body])
    return max(last_granule - pre_skip, 0) / 48_000
