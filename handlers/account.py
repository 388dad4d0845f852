"""/balance (the upstream account) and /usage (the user's own spending)."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from handlers.ui.texts import t
from services.account import AccountService
from services.llm import UpstreamError
from services.users import Profile

STATUS_ICONS = {0: "🟢", 1: "🟡", 2: "🔴"}


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}".replace(",", " ")


async def balance_command(
    message: Message, account: AccountService, profile: Profile, balance_for_everyone: bool
) -> None:
    if not (profile.is_admin or balance_for_everyone):
        await message.answer(t(profile.lang, "admins_only"))
        return
    try:
        balance = await account.balance()
    except UpstreamError as error:
        reason = error.detail or str(error.status or "")
        await message.answer(t(profile.lang, "balance_unavailable", reason=html.escape(reason)))
        return
    until = (
        t(profile.lang, "balance_until", date=html.escape(balance.subscription_end))
        if balance.subscription_end
        else ""
    )
    await message.answer(
        t(
            profile.lang,
            "balance",
            credits=_number(balance.credits),
            subscription=html.escape(balance.subscription_status or "—"),
            until=until,
            status_icon=STATUS_ICONS.get(balance.user_status or 0, "⚪"),
            status_text=html.escape(balance.user_status_text or "—"),
        )
    )


async def usage_command(message: Message, account: AccountService, profile: Profile) -> None:
    report = await account.usage(profile.user.user_id)
    today, total = report.today, report.total
    await message.answer(
        t(
            profile.lang,
            "usage",
            today_requests=today.requests,
            today_tokens=today.prompt_tokens + today.completion_tokens,
            today_credits=_number(today.credits),
            total_requests=total.requests,
            total_tokens=total.prompt_tokens + total.completion_tokens,
            total_credits=_number(total.credits),
        )
    )


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(balance_command, Command("balance"))
    router.message.register(usage_command, Command("usage"))
    return router
