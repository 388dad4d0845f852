"""aiogram routers, one module per feature. `get_routers()` states their order."""

from __future__ import annotations

from aiogram import Router

from handlers import (
    account,
    chat,
    conversation,
    errors,
    image,
    media,
    model,
    settings,
    start,
    video,
)
from handlers.inline_filters import inline_magic_filters


def get_routers() -> list[Router]:
    """Fresh routers for one Dispatcher (a router can have only one parent).

    Order matters: commands before the catch-all chat handlers.
    """
    routers = [
        errors.create_router(),
        start.create_router(),
        conversation.create_router(),
        model.create_router(),
        settings.create_router(),
        account.create_router(),
        image.create_router(),
        video.create_router(),
        media.create_router(),
        chat.create_router(),
    ]
    return [inline_magic_filters(router) for router in routers]
