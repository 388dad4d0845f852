"""A group's settings row, the middleware that hands it to handlers, the admin check and its
cache, and the owner every menu button carries."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import GetChatMember, SendMessage, TelegramMethod
from aiogram.types import (
    CallbackQuery,
    Chat,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardMarkup,
    Message,
    User,
)
from aiogram.utils.callback_answer import CallbackAnswer

from bot.middlewares import ProfileMiddleware
from handlers.ui.callbacks import ModelPick, SettingsAction
from handlers.ui.group_admins import GROUP_ADMIN, GroupAdminOnly, GroupAdmins
from handlers.ui.keyboards import (
    language_keyboard,
    media_models_keyboard,
    model_matches_keyboard,
    models_keyboard,
    persona_keyboard,
    providers_keyboard,
    reply_mode_keyboard,
    reset_confirm_keyboard,
    settings_keyboard,
    temperature_keyboard,
    voices_keyboard,
)
from handlers.ui.ownership import MenuOwnership, menu_owner
from services.model_choice import ModelRef, ProviderModels
from services.storage import SQLiteStorage, UserRecord
from services.users import UserService, is_group

GROUP = -100123
ALICE = 11
BOB = 12
BOT_ADMIN = 99
BIG_ID = 2**52  # Telegram's ids fit 52 bits


class CountingStorage(SQLiteStorage):
    """SQLite in memory, counting what the user cache lets through."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.upserts = 0
        self.reads = 0

    async def upsert_user(self, user_id: int, **fields: Any) -> UserRecord:
        self.upserts += 1
        return await super().upsert_user(user_id, **fields)

    async def get_user(self, user_id: int) -> UserRecord | None:
        self.reads += 1
        return await super().get_user(user_id)


@pytest.fixture
async def storage() -> AsyncIterator[CountingStorage]:
    storage = CountingStorage()
    await storage.connect()
    yield storage
    await storage.close()


@pytest.fixture
def users(storage: CountingStorage) -> UserService:
    return UserService(storage, frozenset({BOT_ADMIN}))


# ------------------------------------------------------------------------ the group's row


async def test_a_groups_row_is_created_once_and_cached(
    users: UserService, storage: CountingStorage
) -> None:
    record = await users.chat_settings(GROUP, "Chess club")
    assert (record.user_id, record.first_name, record.model) == (GROUP, "Chess club", None)
    assert is_group(record.user_id) and not is_group(ALICE)
    assert await users.chat_settings(GROUP, "Chess club") is record
    assert storage.upserts == 1
    # A new title is written; the settings stay.
    await users.set_model(GROUP, "vendor/model")
    renamed = await users.chat_settings(GROUP, "Chess & go club")
    assert (renamed.first_name, renamed.model) == ("Chess & go club", "vendor/model")
    assert storage.upserts == 2


async def test_a_group_removed_then_heard_from_again_is_active(users: UserService) -> None:
    await users.chat_settings(GROUP, "G")
    await users.set_blocked(GROUP, True)
    assert (await users.chat_settings(GROUP, "G")).is_blocked is False


async def test_a_groups_settings_never_touch_its_members(users: UserService) -> None:
    await users.touch(ALICE, username=None, first_name="A", language_code="en")
    await users.chat_settings(GROUP, "G")
    await users.set_model(GROUP, "vendor/group-model")
    await users.set_system_prompt(GROUP, "You are the group's pirate.")
    await users.set_temperature(GROUP, 1.0)
    alice = await users.get(ALICE)
    assert alice is not None
    assert (alice.user.model, alice.user.system_prompt, alice.user.temperature) == (
        None,
        None,
        None,
    )
    reset = await users.reset(GROUP)
    assert reset.user.model is None and reset.user.system_prompt is None


# ----------------------------------------------------------------------------- the middleware


def _message(chat: Chat, user: User | None) -> Message:
    return Message(
        message_id=1,
        date=datetime.datetime.now(datetime.UTC),
        chat=chat,
        from_user=user,
        text="hi",
    )


async def _through_profile(users: UserService, chat: Chat, user: User | None) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def handler(event: Any, data: dict[str, Any]) -> None:
        seen.update(data)

    data = {"event_chat": chat, "event_from_user": user}
    await ProfileMiddleware(users)(handler, _message(chat, user), data)
    return seen


async def test_private_chat_settings_are_the_senders_own_at_no_cost(
    users: UserService, storage: CountingStorage
) -> None:
    alice = User(id=ALICE, is_bot=False, first_name="A", language_code="en")
    chat = Chat(id=ALICE, type="private")
    await _through_profile(users, chat, alice)  # the first message stores Alice
    upserts, reads = storage.upserts, storage.reads
    data = await _through_profile(users, chat, alice)
    assert data["chat_settings"] is data["profile"].user
    assert (storage.upserts, storage.reads) == (upserts, reads)  # no query at all


async def test_group_chat_settings_are_the_groups(users: UserService) -> None:
    alice = User(id=ALICE, is_bot=False, first_name="A", language_code="en")
    data = await _through_profile(users, Chat(id=GROUP, type="supergroup", title="G"), alice)
    assert data["profile"].user.user_id == ALICE
    assert data["chat_settings"].user_id == GROUP


# ------------------------------------------------------------------------ asking who is admin


class MemberSession(BaseSession):
    """Answers getChatMember from `statuses` (or fails with `error`); records sends."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[int, str] = {}
        self.asked: list[int] = []
        self.sent: list[str] = []
        self.error: Exception | None = None

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[Any],
        timeout: int | None = None,  # noqa: ASYNC109  # aiogram's signature
    ) -> Any:
        if isinstance(method, SendMessage):
            self.sent.append(str(method.text))
            return True
        assert isinstance(method, GetChatMember)
        self.asked.append(method.user_id)
        if self.error is not None:
            raise self.error
        user = User(id=method.user_id, is_bot=False, first_name="U")
        status = self.statuses.get(method.user_id, "member")
        if status == "creator":
            return ChatMemberOwner(user=user, is_anonymous=False)
        if status == "administrator":
            flags = dict.fromkeys(
                (
                    "can_be_edited",
                    "is_anonymous",
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                    "can_send_welcome_messages",
                ),
                False,
            )
            return ChatMemberAdministrator(user=user, **flags)
        return ChatMemberMember(user=user)

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        raise NotImplementedError
        yield b""

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def session() -> MemberSession:
    return MemberSession()


@pytest.fixture
def bot(session: MemberSession) -> Bot:
    return Bot("42:TEST", session=session)


async def test_admins_are_asked_once_a_minute(bot: Bot, session: MemberSession) -> None:
    clock = Clock()
    admins = GroupAdmins(ttl=60, clock=clock)
    session.statuses = {ALICE: "creator", BOB: "administrator"}
    assert await admins.is_admin(bot, GROUP, ALICE)
    assert await admins.is_admin(bot, GROUP, BOB)
    assert not await admins.is_admin(bot, GROUP, BOT_ADMIN)
    assert await admins.is_admin(bot, GROUP, ALICE)
    assert session.asked == [ALICE, BOB, BOT_ADMIN]
    # Demoted: still an admin until the answer is a minute old.
    session.statuses[ALICE] = "member"
    clock.now += 59
    assert await admins.is_admin(bot, GROUP, ALICE)
    clock.now += 2
    assert not await admins.is_admin(bot, GROUP, ALICE)
    assert session.asked[-1] == ALICE and len(session.asked) == 4


async def test_the_admin_cache_is_bounded(bot: Bot, session: MemberSession) -> None:
    admins = GroupAdmins(size=2)
    for user in (1, 2, 3):
        await admins.is_admin(bot, GROUP, user)
    await admins.is_admin(bot, GROUP, 3)
    await admins.is_admin(bot, GROUP, 1)  # forgotten: the oldest of three
    assert session.asked == [1, 2, 3, 1]


async def test_a_failed_lookup_is_no_and_not_remembered(bot: Bot, session: MemberSession) -> None:
    admins = GroupAdmins()
    session.statuses = {ALICE: "administrator"}
    session.error = TelegramBadRequest(
        GetChatMember(chat_id=GROUP, user_id=ALICE), "chat not found"
    )
    assert not await admins.is_admin(bot, GROUP, ALICE)
    session.error = None
    assert await admins.is_admin(bot, GROUP, ALICE)
    assert session.asked == [ALICE, ALICE]


async def _guarded(
    middleware: Any, event: Any, chat: Chat, user: User, users: UserService, bot: Bot, **data: Any
) -> bool:
    """Whether the flagged handler ran behind `middleware`."""
    ran = False

    async def handler(event: Any, data: dict[str, Any]) -> None:
        nonlocal ran
        ran = True

    profile = await users.touch(user.id, username=None, first_name="U", language_code="en")
    data = {
        "event_chat": chat,
        "event_from_user": user,
        "profile": profile,
        "bot": bot,
        "group_admins": GroupAdmins(),
        "handler": HandlerObject(callback=handler, flags={GROUP_ADMIN: True}),
        **data,
    }
    await middleware(handler, event, data)
    return ran


async def test_only_admins_pass_in_groups(
    bot: Bot, session: MemberSession, users: UserService
) -> None:
    session.statuses = {ALICE: "administrator"}
    group = Chat(id=GROUP, type="group", title="G")
    alice = User(id=ALICE, is_bot=False, first_name="A")
    bob = User(id=BOB, is_bot=False, first_name="B")
    guard = GroupAdminOnly()
    assert await _guarded(guard, _message(group, alice).as_(bot), group, alice, users, bot)
    assert not await _guarded(guard, _message(group, bob).as_(bot), group, bob, users, bot)
    assert session.sent and "Only this group's admins" in session.sent[-1]
    # The bot's admins need no word from Telegram.
    admin = User(id=BOT_ADMIN, is_bot=False, first_name="Admin")
    asked = len(session.asked)
    assert await _guarded(guard, _message(group, admin).as_(bot), group, admin, users, bot)
    assert len(session.asked) == asked
    # A private chat is its owner's own.
    private = Chat(id=BOB, type="private")
    assert await _guarded(guard, _message(private, bob).as_(bot), private, bob, users, bot)


async def test_a_refused_press_is_an_alert(bot: Bot, users: UserService) -> None:
    group = Chat(id=GROUP, type="supergroup", title="G")
    bob = User(id=BOB, is_bot=False, first_name="B")
    query = CallbackQuery(
        id="1", from_user=bob, chat_instance="c", data="x", message=_message(group, None)
    ).as_(bot)
    answer = CallbackAnswer(answered=False)
    ran = await _guarded(GroupAdminOnly(), query, group, bob, users, bot, callback_answer=answer)
    assert not ran
    assert answer.show_alert and "Only this group's admins" in str(answer.text)


# ----------------------------------------------------------------------------- menu owners


async def test_someone_elses_menu_is_not_pressed(bot: Bot, users: UserService) -> None:
    group = Chat(id=GROUP, type="supergroup", title="G")
    bob = User(id=BOB, is_bot=False, first_name="B")
    query = CallbackQuery(
        id="1", from_user=bob, chat_instance="c", data="x", message=_message(group, None)
    ).as_(bot)
    for owner, allowed in ((ALICE, False), (BOB, True), (0, True)):
        answer = CallbackAnswer(answered=False)
        ran = await _guarded(
            MenuOwnership(),
            query,
            group,
            bob,
            users,
            bot,
            callback_answer=answer,
            callback_data=SettingsAction(action="back", owner=owner),
        )
        assert ran is allowed
        assert bool(answer.show_alert) is not allowed


def _owners(markup: InlineKeyboardMarkup) -> set[int]:
    data = [b.callback_data or "" for row in markup.inline_keyboard for b in row]
    assert all(len(d.encode()) <= 64 for d in data), data
    return {int(d.rsplit(":", 1)[1]) for d in data}


def test_every_menu_button_names_its_owner() -> None:
    long_id = "vendor/" + "x" * 193
    menus = [
        models_keyboard(
            [long_id] * 30, long_id, 2, provider=12, back_to_providers="«", owner=BIG_ID
        )[0],
        providers_keyboard([ProviderModels(0, "VseGPT", ("a/b",))], 0, owner=BIG_ID),
        model_matches_keyboard([ModelRef(12, 150, long_id)], long_id, owner=BIG_ID),
        settings_keyboard("en", owner=BIG_ID),
        settings_keyboard("en", group=True, owner=BIG_ID),
        reset_confirm_keyboard("en", owner=BIG_ID),
        media_models_keyboard("en", "vision", [long_id], None, owner=BIG_ID),
        voices_keyboard("en", ["nova", "alloy"], "nova", owner=BIG_ID),
        reply_mode_keyboard("en", None, owner=BIG_ID),
        persona_keyboard("en", owner=BIG_ID),
        temperature_keyboard("en", 0.7, owner=BIG_ID),
        language_keyboard("en", None, owner=BIG_ID),
    ]
    for markup in menus:
        assert _owners(markup) == {BIG_ID}
    pick = ModelPick.unpack(menus[2].inline_keyboard[0][0].callback_data or "")
    assert menu_owner(pick) == BIG_ID
    assert menu_owner(None) == 0


def test_a_groups_menu_offers_only_the_groups_own_settings() -> None:
    actions = {
        SettingsAction.unpack(b.callback_data or "").action
        for row in settings_keyboard("en", group=True).inline_keyboard
        for b in row
    }
    assert actions == {"persona", "temperature", "vision", "reset"}
