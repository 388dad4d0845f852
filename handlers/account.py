"""/balance (the providers' accounts) and /usage (the user's own spending per provider).

The texts are built by the pure ``render_*`` functions so they are tested without Telegram.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from handlers.access import quota_text
from handlers.ui.texts import t
from services.account import AccountService, ProviderBalance, UsageReport
from services.llm import Balance, BalanceUnavailable, UpstreamError
from services.llm.provider import TokenBalance
from services.storage import UsageSummary
from services.storage.base import ProviderUsage
from services.users import Profile

STATUS_ICONS = {0: "🟢", 1: "🟡", 2: "🔴"}
# VseGPT's user_status in words; another value shows the upstream's own text.
STATUS_KEYS = {
    0: "admin-balance-status-ok",
    1: "admin-balance-status-low",
    2: "admin-balance-status-very-low",
}
# Subscription states in words ("ok" is what VseGPT sends for an active one); anything else
# is shown as it came.
SUBSCRIPTION_KEYS = {
    "ok": "admin-balance-subscription-active",
    "active": "admin-balance-subscription-active",
    "none": "admin-balance-subscription-none",
    "no": "admin-balance-subscription-none",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Unix time in seconds (or milliseconds), as digits, possibly with a fraction.
_UNIX_TIME = re.compile(r"\d{9,13}(?:\.\d+)?")
_DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
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


def parse_date(raw: str) -> date | None:
    """The day a provider means: unix seconds or milliseconds, an ISO date or date-time (UTC
    unless it says otherwise), or "31.12.2026"; None for anything else."""
    value = raw.strip()
    try:
        if _UNIX_TIME.fullmatch(value):
            seconds = float(value)
            if seconds > 1e11:  # milliseconds: seconds this large are thousands of years away
                seconds /= 1000
            return datetime.fromtimestamp(seconds, UTC).date()
        dotted = _DOTTED_DATE.fullmatch(value)
        if dotted:
            day, month, year = (int(part) for part in dotted.groups())
            return date(year, month, day)
        return datetime.fromisoformat(value).date()
    except (ValueError, OverflowError, OSError):
        return None


def human_date(raw: str, lang: str) -> str:
    """A provider's date as people write it ("6 Dec 2026", "6 декабря 2026"), as escaped HTML;
    a value that is not a date is shown as it came."""
    day = parse_date(raw)
    if day is None:
        return html.escape(raw.strip())
    # Digits as strings: Fluent would group a year as a number ("2,026").
    month = _MONTHS[day.month - 1]
    return t(lang, "admin-date", day=str(day.day), month=month, year=str(day.year))


def status_words(balance: Balance, lang: str) -> str:
    """VseGPT's user_status in the reader's words, else the upstream's own text (escaped)."""
    key = None if balance.user_status is None else STATUS_KEYS.get(balance.user_status)
    if key is not None:
        return t(lang, key)
    return html.escape(balance.user_status_text or "—")


def subscription_words(status: str | None, lang: str) -> str:
    if not status:
        return "—"
    key = SUBSCRIPTION_KEYS.get(status.strip().lower())
    return t(lang, key) if key is not None else html.escape(status)


def _render_credits(title: str, balance: Balance, lang: str) -> str:
    until = (
        t(lang, "balance_until", date=human_date(balance.subscription_end, lang))
        if balance.subscription_end
        else ""
    )
    return t(
        lang,
        "balance",
        title=title,
        credits=_number(balance.credits),
        subscription=subscription_words(balance.subscription_status, lang),
        until=until,
        status_icon=STATUS_ICONS.get(balance.user_status or 0, "⚪"),
        status_text=status_words(balance, lang),
    )


def render_balances(balances: Sequence[ProviderBalance], lang: str, *, is_admin: bool) -> str:
    if not balances:
        return t(lang, "balance_none")
    return "\n\n".join(render_balance(item, lang, is_admin=is_admin) for item in balances)


# --------------------------------------------------------------------------------- /usage


def render_figures(usage: UsageSummary | ProviderUsage, units: Sequence[str], lang: str) -> str:
    """One line of figures, e.g. "3 requests, 1,200 tokens, 0.25 credits": requests and tokens
    always, credits and energy only when listed in `units` (a listed unit without figures in
    `usage` counts as 0, so today's line matches the total's)."""
    tokens = usage.prompt_tokens + usage.completion_tokens
    # Numbers, not strings: the texts pick their plural form and format them in the user's
    # language ("1,500" / "1 500", "0.25" / "0,25").
    parts = [
        t(lang, "usage_requests", count=usage.requests),
        t(lang, "usage_tokens", count=tokens),
    ]
    if "credits" in units:
        parts.append(t(lang, "usage_credits", amount=usage.credits or 0.0))
    if "energy" in units:
        parts.append(t(lang, "usage_energy", amount=usage.energy or 0.0))
    return ", ".join(parts)


def render_usage(report: UsageReport, lang: str, *, now: float | None = None) -> str:
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
    if report.quota is not None:
        # What is left of the daily limit, under the overall lines ("" when unlimited).
        left = quota_text(report.quota, lang, time.time() if now is None else now)
        if left:
            blocks[0] += "\n" + left
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
    report = await account.usage(profile.user.user_id, is_admin=profile.is_admin)
    await message.answer(render_usage(report, profile.lang))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(balance_command, Command("balance"))
    router.message.register(usage_command, Command("usage"))
    return router
