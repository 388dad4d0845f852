"""The Telegram side of the admins' notices (services/alerts.py): one message to every admin,
in the admin's own language.

A notice is sent once per admin and never retried beyond the session's own delivery retries:
it describes an event that has already happened, and the next one will follow. An admin who
cannot be reached (never started the bot, blocked it) is logged once, not on every notice,
until a notice reaches them again.
"""

from __future__ import annotations

import html
import logging

from aiogram import Bot

from handlers.ui.texts import t
from services.alerts import Alert, AlertKind
from services.users import UserService

log = logging.getLogger(__name__)

# The language of an admin the bot has never seen (no stored profile).
DEFAULT_LANG = "en"


def _amount(value: float) -> str:
    """Credits as /balance shows them: two decimals, thousands grouped by a space."""
    return f"{value:,.2f}".replace(",", " ")


def _count(value: float) -> str:
    return f"{round(value):,}".replace(",", " ")


def alert_text(alert: Alert, lang: str) -> str:
    provider = html.escape(alert.provider)
    kind = alert.kind
    if kind in (AlertKind.TOKENS_LOW, AlertKind.TOKENS_OK):
        return t(
            lang,
            f"admin-alert-{kind.value}",
            provider=provider,
            model=html.escape(alert.model or ""),
            tokens=_count(alert.tokens or 0),
            threshold=_count(alert.threshold or 0),
        )
    if kind in (AlertKind.BALANCE_LOW, AlertKind.BALANCE_VERY_LOW, AlertKind.BALANCE_OK):
        credits = (
            ""
            if alert.credits is None
            else t(lang, "admin-alert-credits", credits=_amount(alert.credits))
        )
        return t(lang, f"admin-alert-{kind.value}", provider=provider, credits=credits)
    return t(lang, f"admin-alert-{kind.value}", provider=provider)


class TelegramAlertNotifier:
    """`AlertNotifier` for services/alerts.py."""

    def __init__(self, bot: Bot, users: UserService, admin_ids: frozenset[int]) -> None:
        self._bot = bot
        self._users = users
        self._admins = sorted(admin_ids)
        # Admins whose last notice failed: logged once, quiet until one gets through.
        self._unreachable: set[int] = set()

    async def notify(self, alert: Alert) -> None:
        for admin_id in self._admins:
            try:
                profile = await self._users.get(admin_id)
                lang = profile.lang if profile is not None else DEFAULT_LANG
                await self._bot.send_message(admin_id, alert_text(alert, lang))
            except Exception as error:
                # A notice must never break the service that posted it, nor stop the others.
                if admin_id not in self._unreachable:
                    self._unreachable.add(admin_id)
                    log.warning(
                        "admin notice %s not delivered to %d: %s", alert.kind, admin_id, error
                    )
                continue
            self._unreachable.discard(admin_id)
