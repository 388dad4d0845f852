"""The admins' access levers — /allow, /deny, /ban, /unban, /limit — and the texts of
refusals and of what is left of the daily quota.

The commands work for admins in their private chat only, like /stats. The texts are built
by pure functions (tested without Telegram); the refusal text is sent by the spend guard
(bot/spend_guard.py), the quota line is part of /usage (handlers/account.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from handlers.ui.admin_gate import admin_in_private
from handlers.ui.texts import t
from services.access import AccessService, Refusal, Standing, Verdict
from services.users import Profile, UserService

REFUSAL_KEYS = {
    Refusal.BANNED: "access-banned",
    Refusal.NOT_ALLOWED: "access-private",
    Refusal.FLOOD: "access-flood",
    Refusal.QUOTA_REQUESTS: "access-quota-requests",
    Refusal.QUOTA_TOKENS: "access-quota-tokens",
}


# ---------------------------------------------------------------------------------- texts


def wait_text(lang: str, seconds: float) -> str:
    """ "5 h 12 min", "3 min": a wait rounded up to the minute (at least one)."""
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return t(lang, "access-wait", hours=hours, minutes=minutes)


def clock_text(moment: float) -> str:
    """The UTC time of day of a unix time, "00:00"."""
    return time.strftime("%H:%M", time.gmtime(moment))


def refusal_text(
    verdict: Verdict, lang: str, now: float, *, requests_limit: int = 0, tokens_limit: int = 0
) -> str:
    """What a refused user reads; the limits are those of the user (for quota refusals)."""
    refusal = verdict.refusal
    if refusal is None:
        raise ValueError("a passing verdict has no refusal text")
    key = REFUSAL_KEYS[refusal]
    resets_at = verdict.resets_at if verdict.resets_at is not None else now
    if refusal is Refusal.FLOOD:
        return t(lang, key, seconds=max(1, math.ceil(resets_at - now)))
    if refusal in (Refusal.QUOTA_REQUESTS, Refusal.QUOTA_TOKENS):
        limit = requests_limit if refusal is Refusal.QUOTA_REQUESTS else tokens_limit
        return t(
            lang,
            key,
            limit=limit,
            time=clock_text(resets_at),
            wait=wait_text(lang, resets_at - now),
        )
    return t(lang, key)


def quota_text(standing: Standing, lang: str, now: float) -> str:
    """ "Left today: 12 of 50 requests; the limit resets at 00:00 UTC, in 5 h 12 min", or ""
    when nothing limits this user (no limit set, or an admin)."""
    if standing.exempt:
        return ""
    parts = []
    if standing.requests_limit:
        left = max(0, standing.requests_limit - standing.requests_today)
        parts.append(t(lang, "access-left-requests", left=left, limit=standing.requests_limit))
    if standing.tokens_limit:
        left = max(0, standing.tokens_limit - standing.tokens_today)
        parts.append(t(lang, "access-left-tokens", left=left, limit=standing.tokens_limit))
    if not parts:
        return ""
    return t(
        lang,
        "access-usage-left",
        left=", ".join(parts),
        time=clock_text(standing.resets_at),
        wait=wait_text(lang, standing.resets_at - now),
    )


# ------------------------------------------------------------------------------ handlers


def parse_id(args: str | None) -> int | None:
    """One user id or group chat id (negative), nothing else."""
    parts = (args or "").split()
    if len(parts) != 1:
        return None
    try:
        return int(parts[0])
    except ValueError:
        return None


def parse_limit(args: str | None) -> tuple[int, int | None] | None:
    """`<user_id> <requests>` or `<user_id> default` → (user id, limit or None)."""
    parts = (args or "").split()
    if len(parts) != 2:
        return None
    try:
        user_id = int(parts[0])
    except ValueError:
        return None
    if parts[1].lower() == "default":
        return user_id, None
    if not parts[1].isdigit():  # no sign, no spaces: a count of requests
        return None
    return user_id, int(parts[1])


@dataclass(frozen=True, slots=True)
class _IdLever:
    """/allow, /deny, /ban, /unban: one id, one change, one confirmation."""

    usage: str
    done: str
    apply: Callable[[AccessService, int], Awaitable[None]]
    # /allow and /deny change nothing a user notices while the bot is open to everyone.
    mode_note: bool = False
    # A ban of an admin is stored but does nothing: admins pass every check.
    admin_note: bool = False


ID_LEVERS: Mapping[str, _IdLever] = MappingProxyType(
    {
        "allow": _IdLever(
            "access-usage-allow", "access-allowed", AccessService.allow, mode_note=True
        ),
        "deny": _IdLever("access-usage-deny", "access-denied", AccessService.deny, mode_note=True),
        "ban": _IdLever(
            "access-usage-ban", "access-banned-done", AccessService.ban, admin_note=True
        ),
        "unban": _IdLever("access-usage-unban", "access-unbanned", AccessService.unban),
    }
)


async def id_lever_command(
    message: Message,
    command: CommandObject,
    profile: Profile,
    access: AccessService,
    users: UserService,
) -> None:
    if not await admin_in_private(message, profile):
        return
    lever = ID_LEVERS[command.command.lower()]
    target = parse_id(command.args)
    if target is None:
        await message.answer(t(profile.lang, lever.usage))
        return
    await lever.apply(access, target)
    text = t(profile.lang, lever.done, id=str(target))
    if lever.mode_note and access.mode == "open":
        text += "\n" + t(profile.lang, "access-open-mode")
    if lever.admin_note and users.is_admin(target):
        text += "\n" + t(profile.lang, "access-admin-exempt")
    await message.answer(text)


async def limit_command(
    message: Message, command: CommandObject, profile: Profile, access: AccessService
) -> None:
    if not await admin_in_private(message, profile):
        return
    parsed = parse_limit(command.args)
    if parsed is None:
        await message.answer(t(profile.lang, "access-usage-limit"))
        return
    user_id, limit = parsed
    await access.set_daily_limit(user_id, limit)
    if limit is None:
        text = t(
            profile.lang,
            "access-limit-default",
            id=str(user_id),
            limit=access.default_requests_limit,
        )
    elif limit == 0:
        text = t(profile.lang, "access-limit-unlimited", id=str(user_id))
    else:
        text = t(profile.lang, "access-limit-set", id=str(user_id), limit=limit)
    await message.answer(text)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(id_lever_command, Command(*ID_LEVERS))
    router.message.register(limit_command, Command("limit"))
    return router
