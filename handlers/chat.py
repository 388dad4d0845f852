"""Text chat: questions in private chats, in groups when addressed, and `/ask`; Stop; the
replies to commands nothing else took."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.types import CallbackQuery, Message, MessageGenerationStopped
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.filters import Magic
from handlers.incoming import (
    GROUP_TYPES,
    AddressedToBot,
    CommandForAnotherBot,
    CommandForThisBot,
    question_from,
)

# Re-exported for modules that still import it from here; it lives in handlers.incoming.
from handlers.incoming import thread_of as thread_of
from handlers.respond import respond
from handlers.ui.answer import RenderConfig
from handlers.ui.callbacks import StopReply
from handlers.ui.continuation import Continuation
from handlers.ui.texts import t
from services.chat import ChatService, StopResult
from services.questions import QuestionService
from services.storage import UserRecord
from services.users import Profile

# What the spend guard (bot/spend_guard.py) reads: this handler pays for a chat answer.
SPENDS_CHAT = {"spends": "chat"}


async def private_question(
    message: Message,
    bot: Bot,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
    chat_settings: UserRecord | None = None,
    continuation: Continuation | None = None,
) -> None:
    await respond(
        bot,
        message,
        question_from(message, bot, profile, message.text or ""),
        questions=questions,
        profile=profile,
        render=render,
        chat_settings=chat_settings,
        continuation=continuation,
    )


async def group_question(
    message: Message,
    bot: Bot,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
    question: str,
    chat_settings: UserRecord | None = None,
    continuation: Continuation | None = None,
) -> None:
    if not question:
        return
    await respond(
        bot,
        message,
        question_from(message, bot, profile, question),
        questions=questions,
        profile=profile,
        render=render,
        chat_settings=chat_settings,
        continuation=continuation,
    )


async def ask_command(
    message: Message,
    bot: Bot,
    command: CommandObject,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
    chat_settings: UserRecord | None = None,
    continuation: Continuation | None = None,
) -> None:
    """`/ask <question>`: a question without a mention, in groups and private chats alike."""
    text = (command.args or "").strip()
    if not text:
        await message.reply(t(profile.lang, "questions-ask-usage"))
        return
    await respond(
        bot,
        message,
        question_from(message, bot, profile, text),
        questions=questions,
        profile=profile,
        render=render,
        chat_settings=chat_settings,
        continuation=continuation,
    )


async def draft_stopped(event: MessageGenerationStopped, chat: ChatService) -> None:
    # The draft's Stop button: Telegram only hid the draft; the reply task must end.
    chat.stop(event.chat.id, event.draft_id)


async def stop_pressed(
    query: CallbackQuery,
    callback_data: StopReply,
    callback_answer: CallbackAnswer,
    chat: ChatService,
    profile: Profile,
) -> None:
    chat_id = query.message.chat.id if query.message else query.from_user.id
    result = chat.stop(
        chat_id, callback_data.reply_id, user_id=query.from_user.id, force=profile.is_admin
    )
    # NOT_FOUND: a finished answer loses its button, so this one is stale or forged.
    key = {
        StopResult.STOPPED: "stop_ok",
        StopResult.NOT_FOUND: "button_expired",
        StopResult.NOT_ALLOWED: "stop_not_yours",
    }[result]
    callback_answer.text = t(profile.lang, key)
    callback_answer.show_alert = result is StopResult.NOT_ALLOWED


async def unknown_command(message: Message, profile: Profile) -> None:
    text = t(profile.lang, "unknown_command")
    # In a group the hint answers the one who sent the command.
    await (message.answer(text) if message.chat.type == ChatType.PRIVATE else message.reply(text))


async def private_unsupported(message: Message, profile: Profile) -> None:
    await message.answer(t(profile.lang, "not_text"))


def create_router() -> Router:
    """Questions and Stop. First in line: nearly every update is one of these, and each
    router an update passes costs it middleware wrapping and filter checks. A chat in the
    middle of a form (no default state) is left to the routers behind."""
    router = Router(name=__name__)
    router.message.register(
        private_question,
        Magic(F.chat.type == ChatType.PRIVATE),
        Magic(F.text),
        Magic(~F.text.startswith("/")),
        StateFilter(None),
        flags=SPENDS_CHAT,
    )
    router.message.register(
        group_question,
        Magic(F.chat.type.in_(GROUP_TYPES)),
        Magic(F.text),
        Magic(~F.text.startswith("/")),
        StateFilter(None),
        AddressedToBot(),
        flags=SPENDS_CHAT,
    )
    # The cheap prefix check first: with privacy mode off every group message comes here.
    # `/ask@otherbot` is not taken: aiogram's Command filter checks the mention. A photo
    # captioned "/ask" is the media router's.
    router.message.register(
        ask_command, Magic(F.text.startswith("/ask")), Command("ask"), flags=SPENDS_CHAT
    )
    router.stopped_message_generation.register(draft_stopped)
    router.callback_query.register(stop_pressed, StopReply.filter())
    return router


def create_fallback_router() -> Router:
    """Messages nothing else took: unknown commands and, in private chats, unsupported
    content. A command naming another bot (`/cmd@otherbot`) is never answered; in a group
    only one naming this bot is (a bare `/cmd` there may be another bot's)."""
    router = Router(name=f"{__name__}.fallback")
    router.message.register(
        unknown_command,
        Magic(F.chat.type == ChatType.PRIVATE),
        Magic(F.text.startswith("/")),
        ~CommandForAnotherBot(),
    )
    router.message.register(
        unknown_command,
        Magic(F.chat.type.in_(GROUP_TYPES)),
        Magic(F.text.startswith("/")),
        CommandForThisBot(),
    )
    router.message.register(
        private_unsupported, Magic(F.chat.type == ChatType.PRIVATE), Magic(~F.text)
    )
    return router
