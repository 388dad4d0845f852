"""Reading a question off a Telegram message: where it was asked, by whom, to whom, in reply
to what. What is done with it is decided in services/questions.py."""

from __future__ import annotations

from aiogram import Bot
from aiogram.enums import ChatType, MessageEntityType
from aiogram.filters import Filter
from aiogram.types import (
    Message,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
    User,
)

from services.questions import Question, Quote
from services.users import Profile

__all__ = [
    "GROUP_TYPES",
    "AddressedToBot",
    "CommandForAnotherBot",
    "CommandForThisBot",
    "addressed_question",
    "command_mention",
    "question_from",
    "quote_of",
    "thread_of",
]

GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})


def thread_of(message: Message) -> int | None:
    """Forum topics have their own history; a reply thread in a plain group does not."""
    return message.message_thread_id if message.is_topic_message else None


def command_mention(text: str) -> str | None:
    """The bot a command names ("/cmd@name …" → "name"); None for a bare command or no command
    (split as aiogram's Command filter splits it)."""
    if not text.startswith("/"):
        return None
    head = text.split(maxsplit=1)[0]
    command, _, mention = head[1:].partition("@")
    return mention if command and mention else None


def _is_this_bot(name: str, me: User) -> bool:
    return me.username is not None and name.lower() == me.username.lower()


def _ask_text(text: str, me: User) -> str | None:
    """The question of a "/ask …" (or "/ask@thisbot …") text; None when it is not one."""
    head, *args = text.split(maxsplit=1)  # as aiogram's Command filter splits it
    command, _, mention = head[1:].partition("@")
    if command.lower() != "ask" or (mention and not _is_this_bot(mention, me)):
        return None
    return args[0].strip() if args else ""


def addressed_question(message: Message, me: User) -> str | None:
    """In groups: the question when the message is for the bot (it mentions it, replies to
    it, or is captioned "/ask …"), the mention removed; None when it is not for the bot."""
    text = message.text or message.caption or ""
    if text.startswith("/ask"):
        asked = _ask_text(text, me)
        if asked is not None:
            return asked
    replied = message.reply_to_message
    is_reply = (
        replied is not None
        and replied.from_user is not None
        and replied.from_user.id == me.id
        # A reply inside a forum topic points at the topic's service message.
        and replied.forum_topic_created is None
    )
    mention = f"@{me.username}".lower() if me.username else None
    mentioned = False
    cleaned = text
    for entity in message.entities or message.caption_entities or ():
        if entity.type == MessageEntityType.MENTION and mention:
            value = entity.extract_from(text)
            if value.lower() == mention:
                mentioned = True
                cleaned = cleaned.replace(value, " ", 1)
        elif (
            entity.type == MessageEntityType.TEXT_MENTION
            and entity.user is not None
            and entity.user.id == me.id
        ):
            mentioned = True
    if not (mentioned or is_reply):
        return None
    return " ".join(cleaned.split())


def private_caption(caption: str, me: User) -> str | None:
    """A private chat's caption as the question: "/ask …" loses its command; a caption that
    is a command for another bot is not for this one (None)."""
    if not caption.startswith("/"):
        return caption
    asked = _ask_text(caption, me)
    if asked is not None:
        return asked
    mention = command_mention(caption)
    if mention is not None and not _is_this_bot(mention, me):
        return None
    return caption


def _author_of(message: Message) -> str | None:
    """Who wrote a message: a forward's original author, an anonymous admin's or a channel's
    chat, else the sender."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginUser):
        return origin.sender_user.full_name
    if isinstance(origin, MessageOriginHiddenUser):
        return origin.sender_user_name
    if isinstance(origin, MessageOriginChat):
        return origin.sender_chat.title
    if isinstance(origin, MessageOriginChannel):
        return origin.chat.title
    if message.sender_chat is not None:
        return message.sender_chat.title
    return message.from_user.full_name if message.from_user else None


def quote_of(message: Message, bot_id: int) -> Quote | None:
    """The message this one replies to, as context for the model; None when it replies to
    nothing, to the bot's own answer (already in the conversation), or to something with no
    text. When the user quoted a part of it, that part is what they mean."""
    replied = message.reply_to_message
    if replied is None:
        return None
    if replied.from_user is not None and replied.from_user.id == bot_id:
        return None
    if replied.forum_topic_created is not None:
        return None  # in a forum topic every message "replies" to the topic's creation
    text = (message.quote.text if message.quote else None) or replied.text or replied.caption
    if not text:
        return None
    return Quote(_author_of(replied), text)


def question_from(
    message: Message,
    bot: Bot,
    profile: Profile,
    text: str,
    *,
    images: tuple[bytes, ...] = (),
    implied: str = "",
    spoken: bool = False,
) -> Question:
    """The neutral description of a question asked by `message`."""
    speaker: str | None = None
    if message.chat.type in GROUP_TYPES:
        if message.sender_chat is not None:  # an anonymous admin, or a linked channel
            speaker = message.sender_chat.title
        elif message.from_user is not None:
            speaker = message.from_user.full_name
    return Question(
        message.chat.id,
        thread_of(message),
        profile.user.user_id,
        text,
        speaker,
        None if message.reply_to_message is None else quote_of(message, bot.id),
        images,
        implied,
        spoken,
    )


class AddressedToBot(Filter):
    """Passes group messages meant for the bot; the handler receives `question`."""

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, str]:
        question = addressed_question(message, await bot.me())
        return False if question is None else {"question": question}


class CommandForThisBot(Filter):
    """A command naming this bot: "/cmd@thisbot" (in a group a bare "/cmd" may be another
    bot's, so only this form is surely ours)."""

    async def __call__(self, message: Message, bot: Bot) -> bool:
        mention = command_mention(message.text or message.caption or "")
        return mention is not None and _is_this_bot(mention, await bot.me())


class CommandForAnotherBot(Filter):
    """A command naming another bot ("/cmd@otherbot"): never this bot's to answer."""

    async def __call__(self, message: Message, bot: Bot) -> bool:
        mention = command_mention(message.text or message.caption or "")
        return mention is not None and not _is_this_bot(mention, await bot.me())
