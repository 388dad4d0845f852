"""The admins' commands: /stats and /broadcast (with its confirmation and Stop button).

Admins are the user ids in ADMIN_IDS. Both commands work in the private chat only: the
figures are not for a group's eyes, and a broadcast copies a message from that chat.
"""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.filters import Magic
from handlers.ui.broadcast import duration_text, number
from handlers.ui.callbacks import BroadcastAction
from handlers.ui.keyboards import broadcast_confirm_keyboard, broadcast_stop_keyboard
from handlers.ui.texts import t
from services.broadcast import BroadcastBusy, BroadcastService
from services.statistics import StatisticsReport, StatisticsService
from services.users import Profile


class BroadcastForm(StatesGroup):
    message = State()  # waiting for the message to send to everyone


async def _admin_in_private(message: Message, profile: Profile) -> bool:
    """Answers for the refused cases; True when the command may go on."""
    if not profile.is_admin:
        await message.answer(t(profile.lang, "admins_only"))
        return False
    if message.chat.type != "private":
        await message.answer(t(profile.lang, "private_only"))
        return False
    return True


def stats_text(report: StatisticsReport, lang: str) -> str:
    figures = report.figures
    models = ""
    if figures.top_models:
        lines = "\n".join(
            f"{place}. <code>{html.escape(use.model)}</code> — {number(use.requests)}"
            for place, use in enumerate(figures.top_models, start=1)
        )
        models = t(lang, "stats_models", lines=lines)
    broadcast = ""
    if report.broadcast is not None:
        running = report.broadcast
        done = running.delivered + running.blocked + running.failed
        broadcast = t(
            lang,
            "stats_broadcast",
            id=running.id,
            done=number(done),
            total=number(max(done, running.total)),
        )
    return t(
        lang,
        "stats",
        users=number(figures.users),
        blocked=number(figures.blocked_users),
        new_day=number(figures.new_users_day),
        new_week=number(figures.new_users_week),
        active_day=number(figures.active_day),
        active_week=number(figures.active_week),
        active_month=number(figures.active_month),
        requests_day=number(figures.requests_day),
        requests_week=number(figures.requests_week),
        requests_month=number(figures.requests_month),
        tokens=number(figures.tokens_month),
        credits=f"{figures.credits_month:,.2f}".replace(",", " "),
        models=models,
        uptime=duration_text(lang, report.uptime),
        broadcast=broadcast,
    )


async def stats_command(message: Message, profile: Profile, statistics: StatisticsService) -> None:
    if not await _admin_in_private(message, profile):
        return
    report = await statistics.report()
    await message.answer(stats_text(report, profile.lang))


async def broadcast_command(
    message: Message, profile: Profile, broadcasts: BroadcastService, state: FSMContext
) -> None:
    if not await _admin_in_private(message, profile):
        return
    running = broadcasts.running
    if running is not None:
        await message.answer(
            t(profile.lang, "broadcast_busy", id=running.id),
            reply_markup=broadcast_stop_keyboard(profile.lang, running.id),
        )
        return
    count = await broadcasts.recipients()
    if message.reply_to_message is not None:
        # "/broadcast" sent as a reply: that message is the one to send.
        await _confirm(message.reply_to_message, profile, broadcasts, count)
        return
    await state.set_state(BroadcastForm.message)
    await message.answer(t(profile.lang, "broadcast_ask", count=number(count)))


async def broadcast_message_received(
    message: Message, profile: Profile, broadcasts: BroadcastService, state: FSMContext
) -> None:
    if not profile.is_admin:  # ADMIN_IDS changed while the form was open
        await state.clear()
        return
    if message.media_group_id is not None:
        await message.answer(t(profile.lang, "broadcast_no_albums"))
        return
    await state.clear()
    await _confirm(message, profile, broadcasts, await broadcasts.recipients())


async def _confirm(
    source: Message, profile: Profile, broadcasts: BroadcastService, count: int
) -> None:
    if count == 0:
        await source.reply(t(profile.lang, "broadcast_nobody"))
        return
    await source.reply(
        t(
            profile.lang,
            "broadcast_confirm",
            count=number(count),
            duration=duration_text(profile.lang, count / broadcasts.rate),
        ),
        reply_markup=broadcast_confirm_keyboard(profile.lang, source.message_id),
    )


async def broadcast_action(
    query: CallbackQuery,
    callback_data: BroadcastAction,
    profile: Profile,
    broadcasts: BroadcastService,
    callback_answer: CallbackAnswer,
) -> None:
    lang = profile.lang
    if not profile.is_admin:
        callback_answer.text, callback_answer.show_alert = t(lang, "admins_only"), True
        return
    panel = query.message if isinstance(query.message, Message) else None
    if callback_data.action == "stop":
        stopping = await broadcasts.stop(callback_data.ref)
        callback_answer.text = t(
            lang, "broadcast_stopping" if stopping else "broadcast_not_running"
        )
        return
    if panel is None:  # the confirmation is too old to be edited
        callback_answer.text, callback_answer.show_alert = t(lang, "broadcast_not_running"), True
        return
    if callback_data.action == "cancel":
        await panel.edit_text(t(lang, "cancelled"))
        return
    try:
        # The panel becomes the progress view: the broadcast's own task edits it.
        await broadcasts.start(
            admin_id=query.from_user.id,
            from_chat_id=panel.chat.id,
            message_id=callback_data.ref,
            lang=lang,
            progress_message_id=panel.message_id,
        )
    except BroadcastBusy as busy:
        callback_answer.text = t(lang, "broadcast_busy", id=busy.running.id)
        callback_answer.show_alert = True


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(stats_command, Command("stats"))
    router.message.register(broadcast_command, Command("broadcast"))
    router.callback_query.register(broadcast_action, BroadcastAction.filter())
    return router


def create_form_router() -> Router:
    """What is sent while /broadcast waits for its message: after the commands (so /cancel
    works), before media and the catch-alls (a photo or a voice note is what to send)."""
    router = Router(name=f"{__name__}.form")
    router.message.filter(StateFilter(BroadcastForm.message), Magic(F.chat.type == "private"))
    router.message.register(broadcast_message_received)
    return router
