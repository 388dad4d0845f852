"""Voice in and out: speech-to-text for voice notes, text-to-speech for answers."""

from __future__ import annotations

import enum
from collections.abc import Hashable

from services.audio import AudioError, AudioProblem, AudioService
from services.formatting import chunk_for_tts, markdown_to_speech
from services.llm import MediaClient

TTS_INPUT_LIMIT = 4096  # OpenAI-compatible /audio/speech accepts up to 4096 characters
VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")


class ReplyMode(enum.StrEnum):
    TEXT = "text"
    VOICE = "voice"
    BOTH = "both"


def reply_channels(mode: str | None, *, user_spoke: bool) -> tuple[bool, bool]:
    """(send text, send voice). Without a choice: voice when the user spoke, text otherwise."""
    if mode == ReplyMode.TEXT:
        return True, False
    if mode == ReplyMode.VOICE:
        return False, True
    if mode == ReplyMode.BOTH:
        return True, True
    return (False, True) if user_spoke else (True, False)


class VoiceService:
    def __init__(
        self,
        media: MediaClient,
        audio: AudioService,
        *,
        stt_model: str,
        tts_model: str,
        default_voice: str,
    ) -> None:
        self._media = media
        self._audio = audio
        self._stt_model = stt_model
        self._tts_model = tts_model
        self._default_voice = default_voice

    def voice_for(self, chosen: str | None) -> str:
        return chosen if chosen in VOICES else self._default_voice

    async def transcribe(
        self, data: bytes, *, hint: str | None, language: str | None, user_key: Hashable
    ) -> str:
        """Text of a voice note; AudioError for empty, silent, corrupt or too-long audio."""
        prepared = await self._audio.prepare_for_stt(data, hint=hint)
        text = await self._media.transcribe(
            prepared.data,
            filename=prepared.filename,
            model=self._stt_model,
            language=language,
            user_key=user_key,
        )
        text = text.strip()
        if not text:
            raise AudioError(AudioProblem.SILENT)
        return text

    async def synthesize(
        self, markdown: str, *, voice: str | None, user_key: Hashable
    ) -> tuple[bytes, float]:
        """One OGG/Opus voice note for the whole answer, Markdown stripped."""
        speech = markdown_to_speech(markdown)
        chunks = chunk_for_tts(speech, TTS_INPUT_LIMIT)
        if not chunks:
            raise AudioError(AudioProblem.EMPTY)
        parts = [
            await self._media.speech(
                chunk, model=self._tts_model, voice=self.voice_for(voice), user_key=user_key
            )
            for chunk in chunks
        ]
        return await self._audio.to_voice(parts)
