"""/balance (the providers' accounts) and /usage (the user's own spending per provider).

The texts are built by the pure ``render_*`` functions so they are tested without Telegram.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from handlers.ui.texts import t
from services.account import AccountService, ProviderBalance, UsageReport
from services.llm import Balance, BalanceUnavailable, UpstreamError
from services.llm.provider import TokenBalance
from services.storage import UsageSummary
from services.storage.base import ProviderUsage
from services.users import Profile

STATUS_ICONS = {0: "🟢", 1: "🟡", 2: "🔴"}
# An admin reads the upstream's reason on one line; a whole HTML error page helps nobody.
REASON_LIMIT = 200
# Prepaid packages are a handful per account; the cap keeps a strange answer in one message.
TOKEN_LINES_LIMIT = 20


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}".replace(",", " ")


def _count(value: float) -> str:
    """Whole quantities (requests, tokens) grouped like `_number`, without decimals."""
    return f"{round(value):,}".replace(",", " ")


# ------------------------------------------------------------------------------- /balance


def unavailable_reason(provider: str, error: UpstreamError, lang: str, *, is_admin: bool) -> str:
    """Why a provider shows no balance, as escaped HTML on one line.

    The two answers that mean "there is nothing to show" get their own words for everyone; any
    other failure shows the upstream's text to admins only (it is meant for them)."""
    if error.status == 404:
        return t(lang, "balance_not_offered")
    if error.status == 403 and provider == "gigachat" and isinstance(error, BalanceUnavailable):
        return t(lang, "balance_pay_as_you_go")
    if not is_admin:
        return t(lang, "balance_try_later")
    reason = " ".join(error.detail.split())
    if not reason:
        reason = f"HTTP {error.status}" if error.status else type(error).__name__
    if len(reason) > REASON_LIMIT:
        reason = reason[:REASON_LIMIT] + "…"
    return html.escape(reason)


def render_balance(item: ProviderBalance, lang: str, *, is_admin: bool) -> str:
    title = html.escape(item.title)
    result = item.result
    if isinstance(result, UpstreamError):
        reason = unavailable_reason(item.name, result, lang, is_admin=is_admin)
        return t(lang, "balance_unavailable", title=title, reason=reason)
    if isinstance(result, TokenBalance):
        if not result.per_model:
            return t(lang, "balance_tokens_empty", title=title)
        lines = "\n".join(
            t(lang, "balance_tokens_line", model=html.escape(model), tokens=_count(tokens))
            for model, tokens in result.per_model[:TOKEN_LINES_LIMIT]
        )
        return t(lang, "balance_tokens", title=title, lines=lines)
    return _render_credits(title, result, lang)


def _render_credits(title: str, balance: Balance, lang: str) -> str:
    until = (
        t(lang, "balance_until", date=html.escape(balance.subscription_end))
        if balance.subscription_end
        else ""
    )
    return t(
        lang,
        "balance",
        title=title,
        credits=_number(balance.credits),
        subscription=html.escape(balance.subscription_status or "—"),
        until=until,
        status_icon=STATUS_ICONS.get(balance.user_status or 0, "⚪"),
        status_text=html.escape(balance.user_status_text or "—"),
    )


def render_balances(balances: Sequence[ProviderBalance], lang: str, *, is_admin: bool) -> str:
    if not balances:
        return t(lang, "balance_none")
    return "\n\n".join(render_balance(item, lang, is_admin=is_admin) for item in balances)


# --------------------------------------------------------------------------------- /usage


def render_figures(usage: UsageSummary | ProviderUsage, units: Sequence[str], lang: str) -> str:
    """One line of figures, e.g. "3 requests, 1 200 tokens, 0.25 credits": requests and tokens
    always, credits and energy only when listed in `units` (a listed unit without figures in
    `usage` counts as 0, so today's line matches the total's)."""
    parts = [
        t(lang, "usage_requests", count=_count(usage.requests)),
        t(lang, "usage_tokens", count=_count(usage.prompt_tokens + usage.completion_tokens)),
    ]
    if "credits" in units:
        parts.append(t(lang, "usage_credits", amount=_number(usage.credits or 0.0)))
    if "energy" in units:
        parts.append(t(lang, "usage_energy", amount=_number(usage.energy or 0.0)))
    return ", ".join(parts)


def render_usage(report: UsageReport, lang: str) -> str:
    blocks = [
        t(
            lang,
            "usage",
            today=render_figures(report.today, report.units, lang),
            total=render_figures(report.total, report.units, lang),
        )
    ]
    if not report.single_provider:
        for item in report.by_provider:
            title = item.title or t(lang, "usage_primary_provider")
            blocks.append(
                t(
                    lang,
                    "usage_provider",
                    title=html.escape(title),
                    today=render_figures(item.today, item.units, lang),
                    total=render_figures(item.total, item.units, lang),
                )
            )
    return "\n\n".join(blocks)


# ------------------------------------------------------------------------------- handlers


async def balance_command(
    message: Message, account: AccountService, profile: Profile, balance_for_everyone: bool
) -> None:
    if not (profile.is_admin or balance_for_everyone):
        await message.answer(t(profile.lang, "admins_only"))
        return
    balances = await account.balances()
    await message.answer(render_balances(balances, profile.lang, is_admin=profile.is_admin))


async def usage_command(message: Message, account: AccountService, profile: Profile) -> None:
    report = await account.usage(profile.user.user_id)
    await message.answer(render_usage(report, profile.lang))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(balance_command, Command("balance"))
    router.message.register(usage_command, Command("usage"))
    return router
