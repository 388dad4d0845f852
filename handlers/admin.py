"""The admins' commands: /stats, /user and /broadcast (with its confirmation and Stop button).

Admins are the user ids in ADMIN_IDS. The commands work in the private chat only: the
figures are not for a group's eyes, and a broadcast copies a message from that chat.

`/broadcast <text>` sends the text without the command: the bot first posts it in the admin's
chat as a preview (with the admin's formatting, shifted past the command) and the broadcast
copies that preview like any other message, so it is stored, resumed after a restart and
reported exactly as a broadcast of the admin's own message.
"""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.filters import Magic
from handlers.ui.admin_gate import admin_in_private
from handlers.ui.broadcast import command_payload, duration_text
from handlers.ui.callbacks import BroadcastAction
from handlers.ui.keyboards import broadcast_confirm_keyboard, broadcast_stop_keyboard
from handlers.ui.texts import LANG_NAMES, t
from services.access import Refusal
from services.broadcast import BroadcastBusy, BroadcastService
from services.statistics import StatisticsReport, StatisticsService, UserCard
from services.storage import BotStatistics, UsageSummary
from services.users import Profile

# The refusal reasons /stats names, in the order they are checked (the enum's order).
REFUSAL_ORDER = tuple(reason.value for reason in Refusal)


class BroadcastForm(StatesGroup):
    message = State()  # waiting for the message to send to everyone


def stats_text(report: StatisticsReport, lang: str) -> str:
    figures = report.figures
    models = ""
    if figures.top_models:
        lines = "\n".join(
            f"{place}. <code>{html.escape(use.model)}</code> — {use.requests}"
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
            done=done,
            total=max(done, running.total),
        )
    text = t(
        lang,
        "stats",
        users=figures.users,
        blocked=figures.blocked_users,
        new_day=figures.new_users_day,
        new_week=figures.new_users_week,
        active_day=figures.active_day,
        active_week=figures.active_week,
        active_month=figures.active_month,
        requests_day=figures.requests_day,
        requests_week=figures.requests_week,
        requests_month=figures.requests_month,
        tokens=figures.tokens_month,
        credits=figures.credits_month,
        models=models,
        uptime=duration_text(lang, report.uptime),
        broadcast="",
    )
    # Groups and refusals follow the people's figures; the broadcast in progress stays last.
    return "\n".join((text, groups_text(figures, lang), refusals_text(figures, lang))) + broadcast


def groups_text(figures: BotStatistics, lang: str) -> str:
    return t(
        lang,
        "admin-stats-groups",
        # Grouped like the figures above them (a space), not by Fluent's locale rules.
        groups=figures.groups,
        left=figures.groups_left,
        active_day=figures.groups_active_day,
        active_week=figures.groups_active_week,
    )


def refusals_text(figures: BotStatistics, lang: str) -> str:
    counts = [item for item in figures.refusals if item.month > 0]
    if not counts:
        return t(lang, "admin-stats-refusals-none")
    # Known reasons in the order they are checked, then any other, by name.
    rank = {reason: place for place, reason in enumerate(REFUSAL_ORDER)}
    counts.sort(key=lambda item: (rank.get(item.reason, len(rank)), item.reason))
    lines = "\n".join(
        t(
            lang,
            "admin-stats-refusal-line",
            reason=_refusal_name(item.reason, lang),
            today=item.today,
            month=item.month,
        )
        for item in counts
    )
    return t(lang, "admin-stats-refusals", lines=lines)


def _refusal_name(reason: str, lang: str) -> str:
    if reason in REFUSAL_ORDER:
        return t(lang, f"admin-refusal-{reason}")
    return html.escape(reason)  # a reason this version does not know yet


async def stats_command(message: Message, profile: Profile, statistics: StatisticsService) -> None:
    if not await admin_in_private(message, profile):
        return
    report = await statistics.report()
    await message.answer(stats_text(report, profile.lang))


# ----------------------------------------------------------------------------------- /user


def _figures(usage: UsageSummary, lang: str) -> str:
    parts = [
        t(lang, "usage_requests", count=usage.requests),
        t(lang, "usage_tokens", count=usage.prompt_tokens + usage.completion_tokens),
    ]
    if usage.credits:
        parts.append(t(lang, "usage_credits", amount=round(usage.credits, 2)))
    return ", ".join(parts)


def _limit(lang: str, kind: str, used: int, limit: int) -> str:
    if limit <= 0:
        return t(lang, f"admin-user-limit-{kind}-none")
    return t(lang, f"admin-user-limit-{kind}", used=used, limit=limit)


def user_card_text(card: UserCard, lang: str) -> str:
    user, standing = card.user, card.standing
    status: list[str] = []
    if card.is_admin:
        status.append(t(lang, "admin-user-status-admin"))
    if standing is not None:
        if standing.banned:
            status.append(t(lang, "admin-user-status-banned"))
        allowed = "allowed" if standing.allowed else "not-allowed"
        status.append(t(lang, f"admin-user-status-{allowed}"))
    blocked = "blocked" if user.is_blocked else "reachable"
    status.append(t(lang, f"admin-user-status-{blocked}"))
    if standing is None:
        quota = ""
    elif standing.exempt:
        quota = t(lang, "admin-user-quota-exempt")
    else:
        quota = t(
            lang,
            "admin-user-quota",
            requests=_limit(lang, "requests", standing.requests_today, standing.requests_limit),
            tokens=_limit(lang, "tokens", standing.tokens_today, standing.tokens_limit),
            override=t(lang, "admin-user-quota-override") if standing.limit_overridden else "",
        )
    text = t(
        lang,
        "admin-user-card",
        name=html.escape(user.first_name or "") or t(lang, "admin-user-no-name"),
        id=str(user.user_id),  # an id, not a quantity: never grouped
        username=f" · @{html.escape(user.username)}" if user.username else "",
        status=" · ".join(status),
        lang=LANG_NAMES.get(card.lang, card.lang),
        model=html.escape(card.model),
        model_note=t(lang, "admin-user-model-default") if card.default_model else "",
        today=_figures(card.today, lang),
        total=_figures(card.total, lang),
        quota=quota,
    )
    return text.rstrip("\n")


def parse_user_query(args: str | None) -> int | str | None:
    """The target of /user: an id (`/user 123`) or a username (`/user @name`, `/user name`,
    given without the "@"); None when the arguments name nobody."""
    words = (args or "").split()
    if len(words) != 1:
        return None
    word = words[0]
    if word.lstrip("-").isdigit():
        return int(word)
    name = word.removeprefix("@")
    # Telegram usernames: letters, digits and underscores.
    return name if name and name.replace("_", "").isalnum() and name.isascii() else None


async def user_command(
    message: Message,
    command: CommandObject,
    profile: Profile,
    statistics: StatisticsService,
) -> None:
    if not await admin_in_private(message, profile):
        return
    who = parse_user_query(command.args)
    if who is None:
        await message.answer(t(profile.lang, "admin-user-usage"))
        return
    card = await statistics.user_card(who)
    if card is None:
        query = str(who) if isinstance(who, int) else f"@{who}"
        await message.answer(t(profile.lang, "admin-user-unknown", query=html.escape(query)))
        return
    await message.answer(user_card_text(card, profile.lang))


# ------------------------------------------------------------------------------ /broadcast


async def broadcast_command(
    message: Message, profile: Profile, broadcasts: BroadcastService, state: FSMContext
) -> None:
    if not await admin_in_private(message, profile):
        return
    running = broadcasts.running
    if running is not None:
        await message.answer(
            t(profile.lang, "broadcast_busy", id=running.id),
            reply_markup=broadcast_stop_keyboard(profile.lang, running.id),
        )
        return
    count = await broadcasts.recipients()
    payload = command_payload(message.text, message.entities) if message.text else None
    if payload is not None:
        # "/broadcast <text>": the text itself, shown first as the preview that is copied.
        # (It wins over a message the command replies to: the admin typed it on purpose.)
        if count == 0:
            await _confirm(message, profile, broadcasts, count)  # "nobody to send it to"
            return
        text, entities = payload
        preview = await message.answer(text, entities=entities, parse_mode=None)
        await _confirm(preview, profile, broadcasts, count)
        return
    if message.reply_to_message is not None:
        # "/broadcast" sent as a reply: that message is the one to send.
        await _confirm(message.reply_to_message, profile, broadcasts, count)
        return
    await state.set_state(BroadcastForm.message)
    await message.answer(t(profile.lang, "broadcast_ask", count=count))


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
            count=count,
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
    router.message.register(user_command, Command("user"))
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
