"""aiogram routers, one module per feature. `get_routers()` states their order."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Filter
from aiogram.types import Message

from handlers import (
    access,
    account,
    admin,
    chat,
    conversation,
    errors,
    image,
    media,
    membership,
    model,
    settings,
    start,
    video,
)


class LooksLikeCommand(Filter):
    """Text or caption starting with "/": the only messages the command routers can take."""

    async def __call__(self, message: Message) -> bool:
        text = message.text or message.caption
        return text is not None and text.startswith("/")


def get_routers() -> list[Router]:
    """Fresh routers for one Dispatcher (a router can have only one parent).

    Order matters, and it follows how often each kind of update comes: questions first
    (they are nearly all the traffic, and they skip everything else), then the commands
    behind one parent whose message filter lets a question skip all of them at once, the
    forms (persona, broadcast), media, the catch-alls, membership changes and the error
    handler.
    """
    commands = Router(name="commands")
    commands.message.filter(LooksLikeCommand())
    commands.include_routers(
        start.create_router(),
        conversation.create_router(),
        model.create_router(),
        settings.create_router(),
        account.create_router(),
        image.create_router(),
        video.create_router(),
        admin.create_router(),
        access.create_router(),
    )
    return [
        chat.create_router(),
        commands,
        settings.create_form_router(),
        admin.create_form_router(),
        media.create_router(),
        chat.create_fallback_router(),
        membership.create_router(),
        errors.create_router(),
    ]
