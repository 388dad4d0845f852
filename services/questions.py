"""Every question is decided here: text, photo, album, voice note or /ask, private or group.

A handler reads its event into a `Question` (who asks, where, what, with which pictures, in
reply to what, spoken or typed) and calls `QuestionService.ask`. This module turns it into
the conversation's `ChatInput` (the prompt turn, and what history keeps of it), decides the
reply channels (text, voice, or both, with the fallback when no provider speaks), starts the
answer, and records afterwards what the user received. Drawing the answer stays on the
Telegram side (handlers/ui/answer.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.chat import ChatInput, ChatService, DeliveryResult, Reply
from services.image_memory import image_placeholder
from services.storage import UserRecord
from services.voice import VoiceService, reply_channels

__all__ = [
    "QUOTE_LIMIT",
    "Answer",
    "Question",
    "QuestionService",
    "Quote",
    "chat_input",
    "quote_line",
]

# The replied-to text is context, not the question: a long post quoted whole would crowd
# the history out of the model's window (and be stored with every later turn's history).
QUOTE_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Quote:
    """The message a question replies to: its author's name and its text (or caption)."""

    author: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Question:
    """A question as the Telegram side read it, with nothing of Telegram left in it."""

    chat_id: int
    thread_id: int | None  # a forum topic: its own conversation
    user_id: int  # who asks: usage, Stop rights and the rate limiter's fairness key
    text: str  # the user's own words: the message, the caption, the transcript, /ask's text
    # Set in groups, where several people share one history and the model must know who said
    # what; None in private chats.
    speaker: str | None = None
    quote: Quote | None = None  # the message it replies to, when that is not the bot's answer
    images: tuple[bytes, ...] = ()  # prepared JPEGs: the question goes to the vision model
    # What is asked when the user wrote nothing (a picture alone: "describe it"), in their
    # language; the handler knows the language, this module does not.
    implied: str = ""
    spoken: bool = False  # a voice note: an automatic reply mode answers with voice


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer being written, and the channels it is to be delivered through."""

    reply: Reply
    text: bool
    voice: bool


def quote_line(quote: Quote) -> str:
    """The replied-to message as the model reads it: `[In reply to Alice: "…"]`."""
    text = quote.text.strip()
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 1].rstrip() + "…"
    if quote.author:
        return f'[In reply to {quote.author}: "{text}"]'
    return f'[In reply to: "{text}"]'


def chat_input(question: Question) -> ChatInput:
    """The prompt turn of a question, and what history keeps of it.

    The quote goes into history with the question, on purpose: a later "and what about
    his second point?" must still make sense to the model when the question that quoted
    him is several turns back. It is capped (QUOTE_LIMIT), so it costs little. An image
    turn is stored as its placeholder ("[image] …", see services/image_memory.py) with the
    quote and the caption after the mark, so it is still recognised as an image turn.
    """
    asked = question.text or question.implied
    said = question.text
    if question.quote is not None:
        line = quote_line(question.quote)
        asked = f"{line}\n{asked}"
        said = f"{line}\n{said}" if said else line
    stored = image_placeholder(len(question.images), said) if question.images else None
    return ChatInput(
        question.chat_id,
        question.thread_id,
        question.user_id,
        asked,
        question.speaker,
        question.images,
        stored,
    )


class QuestionService:
    """Starts the answer to a question and records what became of its delivery."""

    __slots__ = ("_chat", "voice")

    def __init__(self, chat: ChatService, voice: VoiceService) -> None:
        self._chat = chat
        # The renderer speaks the answer with it (handlers/ui/answer.py).
        self.voice = voice

    def channels(self, reply_mode: str | None, *, spoken: bool) -> tuple[bool, bool]:
        """(send text, send voice) for the asker's reply mode; text when no provider speaks."""
        want_text, want_voice = reply_channels(reply_mode, user_spoke=spoken)
        if want_voice and not self.voice.can_speak:
            return True, False  # a voice-only choice still gets the answer, as text
        return want_text, want_voice

    def ask(self, question: Question, settings: UserRecord, reply_mode: str | None) -> Answer:
        """Start answering at once (in the update's order: each question of a chat sees the
        answer before it). `settings` is the chat's (model, persona, temperature, vision
        model): a group's own in a group, the asker's in a private chat; `reply_mode` is
        always the asker's."""
        reply = self._chat.start(chat_input(question), settings)
        want_text, want_voice = self.channels(reply_mode, spoken=question.spoken)
        return Answer(reply, want_text, want_voice)

    async def delivered(self, answer: Answer, result: DeliveryResult, *, spoken: bool) -> None:
        """Record what the user received; history says so (a voice note is the whole answer)."""
        if spoken or result is DeliveryResult.FULL:
            return
        await self._chat.record_delivery(answer.reply, result)
