"""Voice in and out: speech-to-text for voice notes, text-to-speech for answers."""

from __future__ import annotations

import enum
from collections.abc import Hashable

from services.audio import AudioError, AudioProblem, AudioService
from services.formatting import chunk_for_tts, markdown_to_speech
from services.llm.provider import ProviderRegistry

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
        providers: ProviderRegistry,
        audio: AudioService,
        *,
        stt_model: str,
        tts_model: str,
        default_voice: str,
    ) -> None:
        self._providers = providers
        self._audio = audio
        self._stt_model = stt_model
        self._tts_model = tts_model
        self._default_voice = default_voice

    @property
    def can_listen(self) -> bool:
        """A configured provider turns voice notes into text (not so on a GigaChat-only bot)."""
        return self._providers.offers(self._stt_model, "stt")

    @property
    def can_speak(self) -> bool:
        return self._providers.offers(self._tts_model, "tts")

    def voice_for(self, chosen: str | None) -> str:
        return chosen if chosen in VOICES else self._default_voice

    async def transcribe(
        self, data: bytes, *, hint: str | None, language: str | None, user_key: Hashable
    ) -> str:
        """Text of a voice note; AudioError for empty, silent, corrupt or too-long audio."""
        stt, model = self._providers.stt_for(self._stt_model)
        prepared = await self._audio.prepare_for_stt(data, hint=hint)
        text = await stt.transcribe(
            prepared.data,
            filename=prepared.filename,
            model=model,
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
        tts, model = self._providers.tts_for(self._tts_model)
        parts = [
            await tts.speech(chunk, model=model, voice=self.voice_for(voice), user_key=user_key)
            for chunk in chunks
        ]
        return await self._audio.to_voice(parts)
