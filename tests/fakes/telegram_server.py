"""A fake Telegram Bot API server for unit, end-to-end tests and benchmarks.

The real aiogram ``Bot`` talks to it over loopback::

    fake = FakeTelegram()
    await fake.start()
    bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))

It keeps the state a user would see (per-chat message store with edits applied), records every
call, produces updates for long polling and validates requests the way Telegram does where our bot
could get it wrong (HTML entities, UTF-16 lengths, drafts only in private chats, "message is not
modified"). It is built for throughput: O(1) work per call, no logging, event-driven waiting.

Webhook mode: after `setWebhook` (an HTTPS URL on port 443, 80, 88 or 8443, like Telegram; a
test's `http://127.0.0.1:<any port>` only with `allow_loopback_webhook=True`), pushed updates
are POSTed to the URL one at a time, in order, with the `X-Telegram-Bot-Api-Secret-Token`
header, instead of being served by getUpdates (which answers 409 meanwhile, as Telegram's
does). An update is confirmed by a 2xx answer; any other answer or a network error is recorded
(`webhook_deliveries`, getWebhookInfo's last_error_message) and it is sent again after
`webhook_retry_delay` seconds.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import json
import math
import re
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = [
    "SENDING_METHODS",
    "Call",
    "FakeTelegram",
    "WebhookDelivery",
    "detect_entities",
    "parse_telegram_html",
    "utf16_len",
]

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_RICH = 32768
MAX_RICH_BLOCKS = 500
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_UPLOAD = 50 * 1024 * 1024

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
TEXT_EMPTY = "Bad Request: message text is empty"
TEXT_TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
DRAFT_PEER_INVALID = "Bad Request: TEXTDRAFT_PEER_INVALID"
DRAFT_ID_INVALID = "Bad Request: draft_id must be non-zero"
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
WEBHOOK_HTTPS = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
WEBHOOK_PORT = "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
WEBHOOK_SECRET_INVALID = "Bad Request: secret token contains unallowed characters"
_WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
COPY_NOT_FOUND = "Bad Request: message to copy not found"
BOT_BLOCKED = "Forbidden: bot was blocked by the user"
USER_DEACTIVATED = "Forbidden: user is deactivated"

# Methods that Telegram's flood control counts (drafts are deliberately lenient, see telegram.md).
SENDING_METHODS = frozenset(
    [
        "sendMessage",
        "sendRichMessage",
        "sendPhoto",
        "sendVoice",
        "sendAudio",
        "sendVideo",
        "sendDocument",
        "sendAnimation",
        "copyMessage",
        "editMessageText",
        "editMessageReplyMarkup",
    ]
)

# Methods a user who blocked the bot (or deleted their account) refuses with 403.
_USER_FACING_METHODS = SENDING_METHODS | {
    "sendMessageDraft",
    "sendRichMessageDraft",
    "sendChatAction",
}

# Message fields that describe the envelope, not the content: copyMessage does not carry them over.
_COPY_ENVELOPE = frozenset(
    [
        "message_id",
        "message_thread_id",
        "direct_messages_topic",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "sender_tag",
        "date",
        "business_connection_id",
        "chat",
        "forward_origin",
        "is_topic_message",
        "is_automatic_forward",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "reply_to_checklist_task_id",
        "via_bot",
        "edit_date",
        "has_protected_content",
        "is_from_offline",
        "is_paid_post",
        "media_group_id",
        "author_signature",
        "paid_star_count",
        "effect_id",
        "caption",
        "caption_entities",
        "show_caption_above_media",
        "reply_markup",
    ]
)

# Free-text parameters are never JSON-decoded even when they look like JSON ("[1] see below").
_TEXT_PARAMS = frozenset(
    [
        "text",
        "caption",
        "description",
        "short_description",
        "name",
        "title",
        "query",
        "question",
        "explanation",
        "url",
        "data",
        "custom_title",
        "payload",
    ]
)

_CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)

# kind -> (directory in file_path, default extension, mime type)
_MEDIA = {
    "photo": ("photos", "jpg", "image/jpeg"),
    "voice": ("voice", "oga", "audio/ogg"),
    "audio": ("music", "mp3", "audio/mpeg"),
    "video": ("videos", "mp4", "video/mp4"),
    "document": ("documents", "bin", "application/octet-stream"),
    "animation": ("animations", "mp4", "video/mp4"),
}

# Rich block types whose input and output shapes are identical, so they are echoed verbatim.
_RICH_SAME_SHAPE = frozenset(
    [
        "paragraph",
        "heading",
        "pre",
        "footer",
        "divider",
        "mathematical_expression",
        "anchor",
        "expandable_blockquote",
        "pullquote",
        "table",
    ]
)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts text limits and entity offsets in."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------
# Telegram's HTML subset
# --------------------------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SPECIAL_RE = re.compile(r"[<&]")
_HTML_ENTITY_RE = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]{2,8}));")
_TAG_NAME_RE = re.compile(r"[A-Za-z0-9-]*")
_ATTR_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_UNQUOTED_RE = re.compile(r"[^\s>]*")
_SPACE_RE = re.compile(r"\s*")


class HtmlParseError(ValueError):
    """Raised with Telegram's own wording (without the "can't parse entities" prefix)."""


@dataclass(slots=True)
class _OpenTag:
    name: str
    offset: int
    attrs: dict[str, str]
    language: str | None = None


def _decode_entity(match: re.Match[str]) -> str | None:
    dec, hexa, name = match.groups()
    if name is not None:
        return _NAMED_ENTITIES.get(name)
    code = int(dec) if dec is not None else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _unescape(value: str) -> str:
    if "&" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        decoded = _decode_entity(m)
        return m.group(0) if decoded is None else decoded

    return _HTML_ENTITY_RE.sub(repl, value)


def parse_telegram_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-flavoured HTML into (visible text, entities) like the Bot API does.

    Mirrors tdlib's parse_html: only the supported tags, balanced and properly nested; only
    ``&lt; &gt; &amp; &quot;`` and numeric character references are decoded (any other ``&`` is
    literal). Offsets and lengths are in UTF-16 units.
    """
    out: list[str] = []
    pos = 0
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    i = 0
    n = len(src)

    def byte_offset(index: int) -> int:
        return len(src[:index].encode("utf-8"))

    while True:
        m = _SPECIAL_RE.search(src, i)
        if m is None:
            chunk = src[i:]
            out.append(chunk)
            pos += utf16_len(chunk)
            break
        j = m.start()
        if j > i:
            chunk = src[i:j]
            out.append(chunk)
            pos += utf16_len(chunk)
        if src[j] == "&":
            em = _HTML_ENTITY_RE.match(src, j)
            decoded = _decode_entity(em) if em else None
            if em is None or decoded is None:
                out.append("&")
                pos += 1
                i = j + 1
            else:
                out.append(decoded)
                pos += utf16_len(decoded)
                i = em.end()
            continue

        if j + 1 < n and src[j + 1] == "/":
            end = src.find(">", j)
            if end == -1:
                raise HtmlParseError(f"Unclosed end tag at byte offset {byte_offset(j)}")
            name = src[j + 2 : end].strip().lower()
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {byte_offset(j)}")
            top = stack.pop()
            if name != top.name:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {byte_offset(j)}, expected "</{top.name}>", '
                    f'found "</{name}>"'
                )
            _close_tag(top, pos, stack, entities)
            i = end + 1
            continue

        tm = _TAG_NAME_RE.match(src, j + 1)
        assert tm is not None  # the pattern matches the empty string
        name = tm.group().lower()
        if name not in _HTML_TAGS:
            raise HtmlParseError(f'Unsupported start tag "{name}" at byte offset {byte_offset(j)}')
        k = tm.end()
        attrs: dict[str, str] = {}
        while True:
            k = _SPACE_RE.match(src, k).end()  # type: ignore[union-attr]
            if k >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {byte_offset(j)}")
            if src[k] == ">":
                k += 1
                break
            am = _ATTR_NAME_RE.match(src, k)
            if am is None:
                raise HtmlParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset {byte_offset(j)}'
                )
            attr = am.group().lower()
            k = _SPACE_RE.match(src, am.end()).end()  # type: ignore[union-attr]
            value = ""
            if k < n and src[k] == "=":
                k = _SPACE_RE.match(src, k + 1).end()  # type: ignore[union-attr]
                if k >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {byte_offset(j)}")
                quote = src[k]
                if quote in "'\"":
                    close = src.find(quote, k + 1)
                    if close == -1:
                        raise HtmlParseError(f"Unclosed start tag at byte offset {byte_offset(j)}")
                    value = _unescape(src[k + 1 : close])
                    k = close + 1
                else:
                    vm = _UNQUOTED_RE.match(src, k)
                    assert vm is not None
                    value = _unescape(vm.group())
                    k = vm.end()
            attrs[attr] = value
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(j)}'
            )
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise HtmlParseError("Custom emoji entity must contain a valid custom emoji identifier")
        if name == "tg-time" and not attrs.get("unix", "").lstrip("-").isdigit():
            raise HtmlParseError('Tag "tg-time" must have a valid "unix" attribute')
        stack.append(_OpenTag(name, pos, attrs))
        i = k

    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_tag(
    tag: _OpenTag, pos: int, stack: list[_OpenTag], entities: list[dict[str, Any]]
) -> None:
    parent = stack[-1] if stack else None
    if tag.name == "code" and parent is not None and parent.name == "pre":
        # <pre><code class="language-x"> is one pre entity with a language, as in Telegram.
        cls = tag.attrs.get("class", "")
        if cls.startswith("language-") and len(cls) > len("language-"):
            parent.language = cls[len("language-") :]
        return
    length = pos - tag.offset
    if length <= 0:
        return
    kind = _HTML_TAGS[tag.name]
    entity: dict[str, Any] = {"type": kind, "offset": tag.offset, "length": length}
    if kind == "text_link":
        href = tag.attrs.get("href", "")
        if not href:
            return
        if href.startswith("tg://user?id=") and href[13:].isdigit():
            entity = {
                "type": "text_mention",
                "offset": tag.offset,
                "length": length,
                "user": {"id": int(href[13:]), "is_bot": False, "first_name": "User"},
            }
        else:
            entity["url"] = href
    elif kind == "pre":
        if tag.language:
            entity["language"] = tag.language
    elif kind == "blockquote":
        if "expandable" in tag.attrs:
            entity["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    elif kind == "date_time":
        entity["unix_time"] = int(tag.attrs["unix"])
        if tag.attrs.get("format"):
            entity["date_time_format"] = tag.attrs["format"]
    entities.append(entity)


_TAG_STRIP_RE = re.compile(r"<[^>]*>")


def _html_visible(src: str) -> str:
    """Visible text of free-form HTML (rich messages accept more tags than classic messages)."""
    return _unescape(_TAG_STRIP_RE.sub("", src))


# --------------------------------------------------------------------------------------------
# Records and internal state
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One Bot API request as the fake received it."""

    method: str  # canonical name, e.g. "sendMessage" (as sent when the method is unknown)
    params: dict[str, Any]  # form values; JSON objects/arrays decoded, scalars kept as str
    files: dict[str, tuple[str, bytes]]  # multipart file parts: part name -> (filename, content)
    at: float  # time.monotonic() when received
    response: Any = None  # the {"ok": ...} body that was answered
    # drop_next(): the connection was closed without an answer. `response` is None when the
    # call was not carried out, the body that was lost on the way back when it was.
    dropped: bool = False
    peer: tuple[str, int] | None = None  # the client's address: one per connection it used

    @property
    def ok(self) -> bool:
        return bool(isinstance(self.response, dict) and self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result") if isinstance(self.response, dict) else None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def upload(self, param: str) -> tuple[str, bytes] | None:
        """The uploaded (filename, content) behind a parameter such as "voice" (attach://...)."""
        value = self.params.get(param)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.files.get(value[len("attach://") :])
        return self.files.get(param)


class ApiError(Exception):
    """An error answer: {"ok": false, "error_code": status, "description": ...}."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, description)


@dataclass(slots=True)
class WebhookDelivery:
    """One POST of an update to the webhook: its answer's status, or the network error."""

    update_id: int
    status: int | None
    error: str | None = None
    at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(slots=True)
class _Fault:
    error: ApiError
    times: int
    chat_id: int | None


@dataclass(slots=True)
class _Drop:
    times: int
    chat_id: int | None
    after_processing: bool


@dataclass(slots=True)
class _Stored:
    message: dict[str, Any]
    kind: str
    outgoing: bool
    extra: dict[str, Any] = field(default_factory=dict)  # "_"-prefixed test-only details
    compare: Any = None  # what "message is not modified" compares (content, without markup)
    edits: int = 0


@dataclass(slots=True)
class _File:
    file_id: str
    unique_id: str
    content: bytes
    file_path: str


@dataclass(slots=True)
class _RateWindow:
    capacity: int
    window: float
    stamps: deque[float] = field(default_factory=deque)

    def retry_after(self, now: float) -> int | None:
        cutoff = now - self.window
        stamps = self.stamps
        while stamps and stamps[0] <= cutoff:
            stamps.popleft()
        if len(stamps) >= self.capacity:
            return max(1, math.ceil(stamps[0] + self.window - now))
        return None


def _rate_window(rate: float) -> _RateWindow:
    # A 1 s window for rates >= 1/s; slower rates (e.g. 20/min) get one slot per 1/rate seconds.
    capacity = max(1, int(rate))
    return _RateWindow(capacity=capacity, window=capacity / rate)


def _decode_param(key: str, value: str) -> Any:
    if key not in _TEXT_PARAMS and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _int(value: Any, name: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise _bad(f"Bad Request: {name} is empty")
        return default
    if isinstance(value, bool):
        raise _bad(f"Bad Request: invalid {name} specified")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"Bad Request: invalid {name} specified") from None


def _truthy(value: Any) -> bool:
    return value is True or value in ("true", "True", "1", 1)


def _webhook_queue(update: dict[str, Any]) -> object:
    """The delivery queue of an update, as the Bot API server groups them: one per chat
    (updates about one chat are delivered one at a time, in order); any other update is a
    queue of its own."""
    for key in (
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_message",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
    ):
        event = update.get(key)
        if isinstance(event, dict) and isinstance(event.get("chat"), dict):
            return ("chat", event["chat"].get("id"))
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        message = callback.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return ("chat", message["chat"].get("id"))
    return ("update", update.get("update_id"))


def _update_type(update: dict[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")


_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@])")
_MENTION_RE = re.compile(r"(?<![A-Za-z0-9_@/])@[A-Za-z0-9_]{3,32}(?![A-Za-z0-9_])")
_BOT_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_MD_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([^\s`]*)")
_MD_HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def detect_entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram adds to an incoming text: a leading bot_command and @mentions."""
    entities: list[dict[str, Any]] = []
    ascii_only = text.isascii()

    def offset(index: int) -> int:
        return index if ascii_only else utf16_len(text[:index])

    cm = _COMMAND_RE.match(text)
    if cm is not None:
        entities.append({"type": "bot_command", "offset": 0, "length": cm.end()})
    if "@" in text:
        for mm in _MENTION_RE.finditer(text):
            if cm is not None and mm.start() < cm.end():
                continue
            start = offset(mm.start())
            entities.append(
                {"type": "mention", "offset": start, "length": offset(mm.end()) - start}
            )
    return entities


def _strip_formatted(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    # Telegram trims surrounding whitespace; entities are shifted and clipped accordingly.
    stripped = text.strip()
    if len(stripped) == len(text):
        return text, entities
    if not entities or not stripped:
        return stripped, []
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    size = utf16_len(stripped)
    fixed = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(size, entity["offset"] + entity["length"] - lead)
        if end > start:
            fixed.append({**entity, "offset": start, "length": end - start})
    return stripped, fixed


def _rich_plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_rich_plain(v) for v in value)
    if isinstance(value, dict):
        for key in ("text", "expression", "summary", "name"):
            if key in value:
                return _rich_plain(value[key])
        parts = [_rich_plain(v) for k, v in value.items() if k in ("blocks", "items", "cells")]
        return "\n".join(p for p in parts if p)
    return str(value)


def _markdown_blocks(markdown: str) -> list[dict[str, Any]]:
    """A rough RichMessage for Markdown: headings, fenced code and paragraphs (raw text)."""
    blocks: list[dict[str, Any]] = []
    para: list[str] = []
    code: list[str] = []
    fence: str | None = None
    language = ""

    def flush() -> None:
        if para:
            blocks.append({"type": "paragraph", "text": "\n".join(para)})
            para.clear()

    def close_code() -> None:
        block: dict[str, Any] = {"type": "pre", "text": "\n".join(code)}
        if language:
            block["language"] = language
        blocks.append(block)
        code.clear()

    for line in markdown.split("\n"):
        if fence is not None:
            if line.strip().startswith(fence):
                close_code()
                fence = None
            else:
                code.append(line)
            continue
        fm = _MD_FENCE_RE.match(line)
        if fm:
            flush()
            fence, language = fm.group(1), fm.group(2)
            continue
        hm = _MD_HEADING_RE.match(line)
        if hm:
            flush()
            blocks.append({"type": "heading", "text": hm.group(2), "size": len(hm.group(1))})
        elif line.strip():
            para.append(line)
        else:
            flush()
    if fence is not None:
        close_code()
    flush()
    return blocks


def _blocks_output(blocks: list[Any]) -> list[dict[str, Any]]:
    result = []
    for block in blocks:
        if isinstance(block, dict) and block.get("type") in _RICH_SAME_SHAPE:
            result.append(block)
        else:
            result.append({"type": "paragraph", "text": _rich_plain(block)})
    return result


def _has_thinking(blocks: list[Any]) -> bool:
    return any(isinstance(b, dict) and b.get("type") == "thinking" for b in blocks)


MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "left", "kicked"})


def _chat_member(status: str, user: dict[str, Any]) -> dict[str, Any]:
    """A ChatMember object of `status` with the fields the Bot API always sends for it."""
    member: dict[str, Any] = {"status": status, "user": user}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update(
            dict.fromkeys(
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
        )
        member["can_manage_chat"] = True
    elif status == "kicked":
        member["until_date"] = 0
    return member


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeTelegram:
    """A fake Bot API server on 127.0.0.1 with a random free port."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_id: int = 123456,
        bot_username: str = "test_llm_bot",
        *,
        allow_loopback_webhook: bool = False,
    ) -> None:
        self.token = token
        # Test-only: accept http://127.0.0.1:<any port> webhooks (Telegram takes HTTPS only).
        self.allow_loopback_webhook = allow_loopback_webhook
        # How long a failed webhook delivery waits before it is sent again.
        self.webhook_retry_delay = 0.05
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_client: aiohttp.ClientSession | None = None
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Test LLM Bot",
            "username": bot_username,
        }
        self.calls: list[Call] = []
        self.rate_limited = 0
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False
        # wait_for() waiters: notified only when someone waits, so calls stay cheap.
        self._cond = asyncio.Condition()
        self._call_waiters = 0
        self._updates_event = asyncio.Event()
        self._webhook_event = asyncio.Event()
        self._poll_generation = 0
        self._update_ids = itertools.count(1)  # monotonic across reset(): a live poller's offset
        self._ids = itertools.count(1)  # file ids, callback ids
        self._handlers: dict[str, tuple[str, Callable[[dict[str, Any], Call], Any]]] = {
            name.lower(): (name, handler) for name, handler in self._handler_table().items()
        }
        self._init_state()

    def _init_state(self) -> None:
        self._updates: deque[dict[str, Any]] = deque()
        # deliver_again(): updates served once more whatever the poller's offset says.
        self._again: deque[dict[str, Any]] = deque()
        self._allowed_updates: frozenset[str] | None = None
        self._faults: dict[str, list[_Fault]] = {}
        self._drops: dict[str, list[_Drop]] = {}
        self._rejected: dict[str, ApiError] = {}
        self._global_rate: _RateWindow | None = None
        self._per_chat_rate: float | None = None
        self._chat_rates: dict[int, _RateWindow] = {}
        self._rate_methods: frozenset[str] = SENDING_METHODS
        # chat_id -> message_id -> stored message (user and bot messages share the id sequence)
        self._chats: dict[int, dict[int, _Stored]] = {}
        self._next_message_id: dict[int, int] = {}
        self._outgoing: dict[tuple[int, int], _Stored] = {}  # bot messages, in sending order
        self._chat_info: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._file_paths: dict[str, _File] = {}
        self._callback_ids: set[str] = set()
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # Users whose private chat refuses sending calls with 403 (see block_bot()).
        self._blocked: set[int] = set()
        self._deactivated: set[int] = set()
        # (chat_id, user_id) -> status getChatMember reports (see set_member_status()).
        self._member_status: dict[tuple[int, int], str] = {}
        # setWebhook's url, secret_token and max_connections; None: updates are polled.
        self._webhook: dict[str, Any] | None = None
        self._webhook_error: tuple[int, str] | None = None  # (unix time, message)
        # A test's cap on the deliveries in flight at once (None: setWebhook's max_connections,
        # 40 by default, as Telegram). 1: one at a time, in update order, across all chats.
        self.webhook_max_connections: int | None = None
        self.webhook_deliveries: list[WebhookDelivery] = []

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        # Fresh primitives bind to the loop that runs the server.
        self._cond = asyncio.Condition()
        self._updates_event = asyncio.Event()
        self._webhook_event = asyncio.Event()
        self._webhook_client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._webhook_task = asyncio.create_task(self._deliver_webhooks(), name="fake-webhook")
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # A deep accept queue, like the real API's: a burst of new connections from the bot
        # must not overflow the default 128 and stall on SYN retransmits (a 1 s pause).
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._closing = True
        self._updates_event.set()  # long polls answer at once instead of holding shutdown
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        client, self._webhook_client = self._webhook_client, None
        if client is not None:
            await client.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://127.0.0.1:{self._port}"

    def reset(self) -> None:
        """Forget calls, updates, faults, limits, blocks, messages and files; the server keeps
        running."""
        self.calls = []
        self.rate_limited = 0
        self._init_state()

    # ---------------------------------------------------------------- inspecting calls

    def calls_of(self, *methods: str, chat_id: int | None = None) -> list[Call]:
        wanted = set(methods)
        return [
            c
            for c in self.calls
            if (not wanted or c.method in wanted) and (chat_id is None or c.chat_id == chat_id)
        ]

    async def wait_for(
        self,
        method: str | tuple[str, ...],
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the shared test API takes a timeout
        count: int = 1,
    ) -> list[Call]:
        """Wait until at least `count` calls of `method` matching `predicate` exist (earlier ones
        count too) and return all matching calls."""
        methods = {method} if isinstance(method, str) else set(method)
        matched: list[Call] = []
        scanned = 0
        calls_ref = self.calls

        def ready() -> bool:
            nonlocal scanned, calls_ref
            calls = self.calls
            if calls is not calls_ref:  # reset() replaced the list
                calls_ref, scanned = calls, 0
                matched.clear()
            for index in range(scanned, len(calls)):
                call = calls[index]
                if call.method in methods and (predicate is None or predicate(call)):
                    matched.append(call)
            scanned = len(calls)
            return len(matched) >= count

        if ready():
            return list(matched)
        self._call_waiters += 1
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(ready)
        except TimeoutError:
            message = self._timeout_message(methods, predicate, timeout, count, matched)
            raise TimeoutError(message) from None
        finally:
            self._call_waiters -= 1
        return list(matched)

    def _timeout_message(
        self,
        methods: set[str],
        predicate: Callable[[Call], bool] | None,
        timeout: float,
        count: int,
        matched: list[Call],
    ) -> str:
        seen = Counter(c.method for c in self.calls)
        same = [c for c in self.calls if c.method in methods][-3:]
        lines = [
            f"wait_for({sorted(methods)}, count={count}"
            f"{', predicate' if predicate else ''}) timed out after {timeout}s: "
            f"{len(matched)} matching call(s).",
            f"Methods seen: {dict(seen) or 'none'}.",
        ]
        for call in same:
            params = {k: (v[:80] if isinstance(v, str) else v) for k, v in call.params.items()}
            lines.append(f"  {call.method} {params} -> {str(call.response)[:200]}")
        return "\n".join(lines)

    # ---------------------------------------------------------------- producing updates

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (a fresh update_id is assigned); messages in it are remembered."""
        update = {k: v for k, v in update.items() if k != "update_id"}
        update = {"update_id": next(self._update_ids), **update}
        for key in ("message", "edited_message", "channel_post", "business_message"):
            message = update.get(key)
            if isinstance(message, dict) and "chat" in message and "message_id" in message:
                self._remember_incoming(message)
        allowed = self._allowed_updates
        # Telegram filters by allowed_updates when the update is created, not when it is read.
        if allowed is None or _update_type(update) in allowed:
            self._updates.append(update)
            self._updates_event.set()
            self._webhook_event.set()
        return update

    def deliver_again(self, update: dict[str, Any]) -> None:
        """Deliver an update once more with its own update_id, as Telegram does when the offset
        that confirmed it never reached it: the next getUpdates returns it first even if the
        poller's offset is already past it."""
        self._again.append(update)
        self._updates_event.set()
        self._webhook_event.set()

    def send_message(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        first_name: str = "User",
        username: str | None = None,
        reply_to_message: dict[str, Any] | None = None,
        message_thread_id: int | None = None,
        is_topic_message: bool | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Queue a text message from a user; entities are auto-detected when None."""
        user = self._user(user_id, first_name, username, language_code)
        chat = self._chat(
            user_id if chat_id is None else chat_id,
            chat_type,
            user,
            is_forum=bool(is_topic_message) or None,
        )
        message = self._incoming_message(chat, user)
        message["text"] = text
        found = detect_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        if reply_to_message is not None:
            message["reply_to_message"] = self._public(reply_to_message)
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
        if is_topic_message is not None:
            message["is_topic_message"] = is_topic_message
        return self.push_update({"message": message})

    def send_voice(
        self,
        user_id: int,
        content: bytes,
        *,
        duration: int = 1,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        first_name: str = "User",
        caption: str | None = None,
    ) -> dict[str, Any]:
        """Queue a voice note from a user; its file is served by getFile + download."""
        user = self._user(user_id, first_name, None, language_code)
        chat = self._chat(user_id if chat_id is None else chat_id, chat_type, user)
        stored = self._register_file("voice", content)
        message = self._incoming_message(chat, user)
        message["voice"] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(content),
        }
        if caption:
            message["caption"] = caption
        return self.push_update({"message": message})

    def press_stop(
        self, chat_id: int, draft_id: int, message_thread_id: int | None = None
    ) -> dict[str, Any]:
        """The user pressed Stop on a streaming draft (can_stop=True)."""
        chat = self._chat_info.get(chat_id) or {
            "id": chat_id,
            "type": "private",
            "first_name": "User",
        }
        stopped: dict[str, Any] = {"chat": chat, "draft_id": draft_id}
        if message_thread_id is not None:
            stopped["message_thread_id"] = message_thread_id
        return self.push_update({"stopped_message_generation": stopped})

    def press_button(
        self,
        user_id: int,
        message: dict[str, Any],
        data: str,
        *,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        """The user pressed an inline button with callback `data` under `message`."""
        user = self._users.get(user_id) or self._user(user_id, "User", None, language_code)
        chat_id = message["chat"]["id"]
        current = self._chats.get(chat_id, {}).get(message["message_id"])
        query_id = str(next(self._ids))
        self._callback_ids.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "message": current.message if current is not None else self._public(message),
            "chat_instance": str(abs(chat_id) * 7919 % 10**12),
            "data": data,
        }
        return self.push_update({"callback_query": query})

    def block_bot(self, user_id: int, *, notify: bool = False) -> dict[str, Any] | None:
        """The user blocked the bot: sending calls to their private chat answer 403 "Forbidden:
        bot was blocked by the user" until unblock_bot() or reset(). With `notify`, also queue the
        my_chat_member update Telegram sends (bot: "member" -> "kicked") and return it."""
        self._blocked.add(user_id)
        return self._my_chat_member(user_id, "member", "kicked") if notify else None

    def unblock_bot(self, user_id: int, *, notify: bool = False) -> dict[str, Any] | None:
        """The user unblocked the bot (restarted it); with `notify`, queue and return the
        my_chat_member update ("kicked" -> "member")."""
        self._blocked.discard(user_id)
        return self._my_chat_member(user_id, "kicked", "member") if notify else None

    def deactivate_user(self, user_id: int) -> None:
        """The user deleted their account: sending calls to their private chat answer 403
        "Forbidden: user is deactivated" until reset() (this wins over block_bot())."""
        self._deactivated.add(user_id)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember reports for `user_id` in the group `chat_id` from now on (until
        reset()): one of MEMBER_STATUSES; "member" when never set."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {status!r}")
        self._member_status[(chat_id, user_id)] = status

    def bot_added_to_group(
        self,
        chat_id: int,
        by_user: int,
        *,
        old: str = "left",
        new: str = "member",
        chat_type: str = "supergroup",
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        """Queue the my_chat_member update Telegram sends when `by_user` changes the bot's
        status in a group (by default: adds it); the bot's getChatMember follows `new`."""
        if old not in MEMBER_STATUSES or new not in MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {old!r} or {new!r}")
        user = self._users.get(by_user) or self._user(by_user, "User", None, language_code)
        chat = self._chat(chat_id, chat_type, user)
        self._member_status[(chat_id, self.bot_id)] = new
        return self._push_my_chat_member(chat, user, old, new)

    def _my_chat_member(self, user_id: int, old: str, new: str) -> dict[str, Any]:
        user = self._users.get(user_id) or self._user(user_id, "User", None, "en")
        chat = self._chat_info.get(user_id) or self._chat(user_id, "private", user)
        return self._push_my_chat_member(chat, user, old, new)

    def _push_my_chat_member(
        self, chat: dict[str, Any], user: dict[str, Any], old: str, new: str
    ) -> dict[str, Any]:
        updated = {
            "chat": chat,
            "from": user,
            "date": int(time.time()),
            "old_chat_member": _chat_member(old, self.bot_user),
            "new_chat_member": _chat_member(new, self.bot_user),
        }
        return self.push_update({"my_chat_member": updated})

    def _user(
        self, user_id: int, first_name: str, username: str | None, language_code: str | None
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def _chat(
        self,
        chat_id: int,
        chat_type: str,
        user: dict[str, Any],
        is_forum: bool | None = None,
    ) -> dict[str, Any]:
        if chat_type == "private":
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            if "username" in user:
                chat["username"] = user["username"]
        else:
            chat = {"id": chat_id, "type": chat_type, "title": "Test chat"}
            if is_forum or self._chat_info.get(chat_id, {}).get("is_forum"):
                chat["is_forum"] = True
        self._chat_info[chat_id] = chat
        return chat

    def _incoming_message(self, chat: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        return {
            "message_id": self._alloc_message_id(chat["id"]),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
        }

    def _remember_incoming(self, message: dict[str, Any]) -> None:
        chat = message["chat"]
        chat_id = chat["id"]
        self._chat_info.setdefault(chat_id, chat)
        message_id = message["message_id"]
        if message_id >= self._next_message_id.get(chat_id, 1):
            self._next_message_id[chat_id] = message_id + 1
        kind = next((k for k in ("text", *_MEDIA) if k in message), "other")
        self._chats.setdefault(chat_id, {})[message_id] = _Stored(message, kind, outgoing=False)

    def _alloc_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    @staticmethod
    def _public(message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if not k.startswith("_")}

    # ---------------------------------------------------------------- state as the user sees it

    def sent_messages(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Bot messages still present (after edits and deletions), oldest first, with "_kind"."""
        if chat_id is None:
            stored: Iterable[_Stored] = self._outgoing.values()
        else:
            stored = (s for s in self._chats.get(chat_id, {}).values() if s.outgoing)
        return [{**s.message, "_kind": s.kind, "_edits": s.edits, **s.extra} for s in stored]

    def add_file(self, file_id: str, content: bytes, file_path: str) -> None:
        """Make a file available to getFile (by file_id) and download (by file_path)."""
        stored = _File(file_id, f"U{file_id[-16:]}", content, file_path)
        self._files[file_id] = stored
        self._file_paths[file_path] = stored

    def _register_file(self, kind: str, content: bytes, filename: str | None = None) -> _File:
        number = next(self._ids)
        directory, ext, _ = _MEDIA[kind]
        if filename and "." in filename and kind == "document":
            ext = filename.rsplit(".", 1)[1]
        file_id = f"{kind.upper()}-{number:010d}-{self.bot_id}"
        stored = _File(file_id, f"U{number:010d}", content, f"{directory}/file_{number}.{ext}")
        self._files[file_id] = stored
        self._file_paths[stored.file_path] = stored
        return stored

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (only for `chat_id` if given) with an error."""
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = _default_description(status, retry_after)
        fault = _Fault(ApiError(status, description, retry_after), times, chat_id)
        self._faults.setdefault(self._canonical(method), []).append(fault)

    def drop_next(
        self,
        method: str,
        *,
        times: int = 1,
        chat_id: int | None = None,
        after_processing: bool = False,
    ) -> None:
        """Close the connection of the next `times` calls of `method` (only for `chat_id` if
        given) without any HTTP response. With `after_processing` the call is carried out first
        (a message really is sent and stored: the answer was lost on the way back); otherwise
        nothing happens. Such calls are recorded with `dropped=True`."""
        drop = _Drop(times, chat_id, after_processing)
        self._drops.setdefault(self._canonical(method), []).append(drop)

    def reject_method(
        self, method: str, *, status: int = 400, description: str = "Bad Request: ..."
    ) -> None:
        """Fail every call of `method` until reset()."""
        self._rejected[self._canonical(method)] = ApiError(status, description)

    def enforce_limits(
        self,
        *,
        global_per_second: float | None = 30,
        per_chat_per_second: float | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Answer 429 (counted in `rate_limited`) when message-sending calls exceed these rates
        in a sliding window; `methods` overrides which methods count (default SENDING_METHODS)."""
        self._global_rate = _rate_window(global_per_second) if global_per_second else None
        self._per_chat_rate = per_chat_per_second or None
        self._chat_rates = {}
        self._rate_methods = (
            SENDING_METHODS if methods is None else frozenset(self._canonical(m) for m in methods)
        )

    def _canonical(self, method: str) -> str:
        entry = self._handlers.get(method.lower())
        return entry[0] if entry else method

    def _injected_drop(self, method: str, params: dict[str, Any]) -> _Drop | None:
        drops = self._drops.get(method)
        if not drops:
            return None
        for index, drop in enumerate(drops):
            if drop.chat_id is not None:
                try:
                    if int(params.get("chat_id", "")) != drop.chat_id:
                        continue
                except (TypeError, ValueError):
                    continue
            drop.times -= 1
            if drop.times <= 0:
                del drops[index]
            return drop
        return None

    def _injected_fault(self, method: str, params: dict[str, Any]) -> ApiError | None:
        rejected = self._rejected.get(method)
        if rejected is not None:
            return rejected
        faults = self._faults.get(method)
        if not faults:
            return None
        chat_id: int | None = None
        for index, fault in enumerate(faults):
            if fault.chat_id is not None:
                if chat_id is None:
                    try:
                        chat_id = int(params.get("chat_id", ""))
                    except ValueError:
                        continue
                if fault.chat_id != chat_id:
                    continue
            fault.times -= 1
            if fault.times <= 0:
                del faults[index]
            return fault.error
        return None

    def _rate_check(self, method: str, params: dict[str, Any], now: float) -> None:
        if method not in self._rate_methods:
            return
        waits = []
        if self._global_rate is not None:
            waits.append(self._global_rate.retry_after(now))
        window = self._chat_window(params)
        if window is not None:
            waits.append(window.retry_after(now))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            self.rate_limited += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)

    def _rate_record(self, method: str, params: dict[str, Any], now: float) -> None:
        if method not in self._rate_methods:
            return
        if self._global_rate is not None:
            self._global_rate.stamps.append(now)
        window = self._chat_window(params)
        if window is not None:
            window.stamps.append(now)

    def _check_reachable(self, params: dict[str, Any]) -> None:
        try:
            chat_id = int(params.get("chat_id", ""))
        except (TypeError, ValueError):
            return
        if chat_id in self._deactivated:
            raise ApiError(403, USER_DEACTIVATED)
        if chat_id in self._blocked:
            raise ApiError(403, BOT_BLOCKED)

    def _chat_window(self, params: dict[str, Any]) -> _RateWindow | None:
        if self._per_chat_rate is None:
            return None
        try:
            chat_id = int(params.get("chat_id", ""))
        except ValueError:
            return None
        window = self._chat_rates.get(chat_id)
        if window is None:
            window = self._chat_rates[chat_id] = _rate_window(self._per_chat_rate)
        return window

    # ---------------------------------------------------------------- HTTP plumbing

    async def _read_params(
        self, request: web.Request
    ) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = {k: _decode_param(k, v) for k, v in request.query.items()}
        files: dict[str, tuple[str, bytes]] = {}
        if not request.can_read_body:
            return params, files
        content_type = request.content_type
        if content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if part is None or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = (part.filename, bytes(await part.read()))
                else:
                    params[part.name] = _decode_param(part.name, await part.text())  # type: ignore[union-attr]
        elif content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_param(key, value)
        return params, files

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        method = request.match_info["method"]
        try:
            params, files = await self._read_params(request)
        except (ValueError, UnicodeDecodeError):
            params, files = {}, {}
        entry = self._handlers.get(method.lower())
        call = Call(entry[0] if entry else method, params, files, at)
        if request.transport is not None:
            call.peer = request.transport.get_extra_info("peername")
        drop: _Drop | None = None
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if entry is None:
                raise ApiError(404, "Not Found: method not found")
            name, handler = entry
            drop = self._injected_drop(name, params)
            if drop is not None and not drop.after_processing:
                return await self._drop_connection(request, call)
            fault = self._injected_fault(name, params)
            if fault is not None:
                raise fault
            if (self._blocked or self._deactivated) and name in _USER_FACING_METHODS:
                self._check_reachable(params)
            # Refused calls raise before _rate_record: they never fill the rate windows.
            self._rate_check(name, params, at)
            if name == "getUpdates":
                result = await self._get_updates(params)
            else:
                result = handler(params, call)
            self._rate_record(name, params, at)
            body: dict[str, Any] = {"ok": True, "result": result}
            status = 200
        except ApiError as error:
            body, status = error.body(), error.status
        except Exception as error:  # a bug in the fake must reach the test as a readable answer
            body = {
                "ok": False,
                "error_code": 500,
                "description": f"Internal Server Error: fake failed: {error!r}",
            }
            status = 500
        call.response = body
        if drop is not None:
            return await self._drop_connection(request, call)
        self.calls.append(call)
        if self._call_waiters:
            async with self._cond:
                self._cond.notify_all()
        return web.Response(
            text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            status=status,
            content_type="application/json",
        )

    async def _drop_connection(self, request: web.Request, call: Call) -> web.Response:
        call.dropped = True
        self.calls.append(call)
        if self._call_waiters:
            async with self._cond:
                self._cond.notify_all()
        # Close at once, before any byte of the answer: the client sees the connection end
        # with no status line, as after a network failure or a crash between the two.
        transport = request.transport
        if transport is not None:
            transport.abort()
        # aiohttp writes this to the aborted transport, which discards it.
        return web.Response(status=204)

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        stored = self._file_paths.get(request.match_info["path"])
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.Response(body=stored.content, content_type="application/octet-stream")

    # ---------------------------------------------------------------- getUpdates

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_ACTIVE)
        offset = _int(params.get("offset"), "offset", 0)
        limit = min(100, max(1, _int(params.get("limit"), "limit", 100)))
        timeout = max(0, _int(params.get("timeout"), "timeout", 0))
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else None
        self._confirm(offset)
        # A newer poll terminates an older one with 409, exactly like Telegram.
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates_event.set()
        # self._updates is re-read after every wait: reset() replaces the deque.
        if not self._updates and not self._again and timeout and not self._closing:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not self._updates and not self._again and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._updates_event.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._updates_event.wait()
                except TimeoutError:
                    break
                if generation != self._poll_generation:
                    raise ApiError(409, CONFLICT)
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_ACTIVE)  # set while this poll waited
        if generation != self._poll_generation:
            raise ApiError(409, CONFLICT)
        again = [self._again.popleft() for _ in range(min(limit, len(self._again)))]
        return again + list(itertools.islice(self._updates, limit - len(again)))

    def _confirm(self, offset: int) -> None:
        updates = self._updates
        if offset < 0:
            while len(updates) > -offset:
                updates.popleft()
        else:
            while updates and updates[0]["update_id"] < offset:
                updates.popleft()

    # ---------------------------------------------------------------- webhook

    @property
    def webhook_url(self) -> str | None:
        return self._webhook["url"] if self._webhook is not None else None

    def _set_webhook(self, params: dict[str, Any], call: Call) -> bool:
        url = str(params.get("url") or "")
        if _truthy(params.get("drop_pending_updates")):
            self._updates.clear()
            self._again.clear()
        if not url:  # an empty URL removes the webhook, as deleteWebhook does
            self._webhook = None
            return True
        parts = urllib.parse.urlsplit(url)
        loopback = self.allow_loopback_webhook and parts.hostname in ("127.0.0.1", "localhost")
        if parts.scheme != "https" and not (loopback and parts.scheme == "http"):
            raise _bad(WEBHOOK_HTTPS)
        if not loopback and (parts.port or 443) not in _WEBHOOK_PORTS:
            raise _bad(WEBHOOK_PORT)
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.fullmatch(str(secret)):
            raise _bad(WEBHOOK_SECRET_INVALID)
        max_connections = _int(params.get("max_connections"), "max_connections", 40)
        if not 1 <= max_connections <= 100:
            raise _bad("Bad Request: bad webhook: max_connections must be between 1 and 100")
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else None
        self._webhook = {
            "url": url,
            "secret_token": None if secret is None else str(secret),
            "max_connections": max_connections,
        }
        self._webhook_error = None
        # A long poll still waiting ends with 409, as when Telegram switches to the webhook.
        self._updates_event.set()
        self._webhook_event.set()
        return True

    def _delete_webhook(self, params: dict[str, Any], call: Call) -> bool:
        self._webhook = None
        if _truthy(params.get("drop_pending_updates")):
            self._updates.clear()
            self._again.clear()
        return True

    def _get_webhook_info(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates) + len(self._again),
        }
        if self._webhook is not None:
            info["max_connections"] = self._webhook["max_connections"]
            if self._allowed_updates is not None:
                info["allowed_updates"] = sorted(self._allowed_updates)
            if self._webhook_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    async def _deliver_webhooks(self) -> None:
        """While a webhook is set, POST the pending updates as the Bot API server does
        (telegram-bot-api's WebhookActor): up to `max_connections` at once (setWebhook's,
        40 by default; `webhook_max_connections` caps it for a test), oldest first, but one
        at a time per chat, so a chat's updates arrive in order; an update that is not taken
        (no 2xx) holds its chat back for `webhook_retry_delay` and is sent again, while the
        other chats go on."""
        in_flight: dict[object, asyncio.Task[None]] = {}
        try:
            while True:
                hook = self._webhook
                started = False
                if hook is not None:
                    limit = hook["max_connections"]
                    if self.webhook_max_connections is not None:
                        limit = min(limit, self.webhook_max_connections)
                    held: set[object] = set(in_flight)
                    # Like the server, only the next 2 x max_connections updates are looked at.
                    for source, update in self._pending_updates(2 * limit):
                        if len(in_flight) >= limit:
                            break
                        queue = _webhook_queue(update)
                        if queue in held:  # in flight, or an earlier one of its chat waits
                            continue
                        held.add(queue)
                        in_flight[queue] = asyncio.create_task(
                            self._deliver_one(hook, update, source, queue, in_flight)
                        )
                        started = True
                if not started:
                    self._webhook_event.clear()
                    await self._webhook_event.wait()
        finally:
            for task in in_flight.values():
                task.cancel()
            await asyncio.gather(*in_flight.values(), return_exceptions=True)

    def _pending_updates(
        self, window: int
    ) -> Iterator[tuple[deque[dict[str, Any]], dict[str, Any]]]:
        again, updates = self._again, self._updates
        for update in itertools.islice(again, window):
            yield again, update
        for update in itertools.islice(updates, max(0, window - len(again))):
            yield updates, update

    async def _deliver_one(
        self,
        hook: dict[str, Any],
        update: dict[str, Any],
        source: deque[dict[str, Any]],
        queue: object,
        in_flight: dict[object, asyncio.Task[None]],
    ) -> None:
        try:
            delivery = await self._post_update(hook, update)
            if delivery.ok:
                # Taken: gone from its queue (unless dropped or reset meanwhile).
                for index, pending in enumerate(source):
                    if pending is update:
                        del source[index]
                        break
            else:
                self._webhook_error = (int(time.time()), delivery.error or "")
                await asyncio.sleep(self.webhook_retry_delay)
        finally:
            in_flight.pop(queue, None)
            self._webhook_event.set()

    async def _post_update(self, hook: dict[str, Any], update: dict[str, Any]) -> WebhookDelivery:
        assert self._webhook_client is not None
        headers = {"Content-Type": "application/json"}
        if hook["secret_token"] is not None:
            headers[SECRET_HEADER] = hook["secret_token"]
        body = json.dumps(update, ensure_ascii=False)
        try:
            async with self._webhook_client.post(hook["url"], data=body, headers=headers) as r:
                await r.read()
                status: int | None = r.status
                error = None
                if not 200 <= r.status < 300:
                    error = f"Wrong response from the webhook: {r.status} {r.reason}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = None, f"Connection failed: {type(exc).__name__}"
        delivery = WebhookDelivery(update["update_id"], status, error, time.monotonic())
        self.webhook_deliveries.append(delivery)
        if self._call_waiters:
            async with self._cond:
                self._cond.notify_all()
        return delivery

    async def wait_for_deliveries(
        self,
        predicate: Callable[[WebhookDelivery], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the shared test API takes a timeout
    ) -> list[WebhookDelivery]:
        """Wait until `count` webhook deliveries matching `predicate` were made; return them."""

        def matching() -> list[WebhookDelivery]:
            return [d for d in self.webhook_deliveries if predicate is None or predicate(d)]

        self._call_waiters += 1
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(lambda: len(matching()) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"wait_for_deliveries(count={count}) timed out after {timeout}s: "
                f"{self.webhook_deliveries[-5:]}"
            ) from None
        finally:
            self._call_waiters -= 1
        return matching()

    # ---------------------------------------------------------------- method handlers

    def _handler_table(self) -> dict[str, Callable[[dict[str, Any], Call], Any]]:
        return {
            "getMe": lambda p, c: self.bot_user,
            "getUpdates": lambda p, c: [],  # served by _get_updates (async)
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getMyCommands": self._get_my_commands,
            "sendMessage": self._send_message,
            "sendRichMessage": self._send_rich_message,
            "sendMessageDraft": self._send_message_draft,
            "sendRichMessageDraft": self._send_rich_message_draft,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "sendPhoto": lambda p, c: self._send_media("photo", p, c),
            "sendVoice": lambda p, c: self._send_media("voice", p, c),
            "sendAudio": lambda p, c: self._send_media("audio", p, c),
            "sendVideo": lambda p, c: self._send_media("video", p, c),
            "sendDocument": lambda p, c: self._send_media("document", p, c),
            "sendAnimation": lambda p, c: self._send_media("animation", p, c),
            "copyMessage": self._copy_message,
            "setMessageReaction": self._set_message_reaction,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
        }

    # -- helpers shared by handlers

    def _chat_id(self, params: dict[str, Any], key: str = "chat_id") -> int:
        value = params.get(key)
        if value is None or value == "":
            raise _bad(f"Bad Request: {key} is empty")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad("Bad Request: chat not found") from None

    def _is_private(self, chat_id: int) -> bool:
        info = self._chat_info.get(chat_id)
        if info is not None:
            return info.get("type") == "private"
        return chat_id > 0

    def _chat_dict(self, chat_id: int) -> dict[str, Any]:
        info = self._chat_info.get(chat_id)
        if info is None:
            if chat_id > 0:
                info = {"id": chat_id, "type": "private", "first_name": "User"}
            else:
                kind = "supergroup" if str(chat_id).startswith("-100") else "group"
                info = {"id": chat_id, "type": kind, "title": "Test chat"}
            self._chat_info[chat_id] = info
        return info

    def _formatted(
        self,
        text: Any,
        parse_mode: Any,
        entities: Any,
        *,
        limit: int,
        too_long: str,
        empty: str | None,
    ) -> tuple[str, list[dict[str, Any]]]:
        """Visible text and entities after Telegram's entity parsing, validated."""
        if text is None:
            text = ""
        if not isinstance(text, str):
            text = str(text)
        mode = parse_mode.lower() if isinstance(parse_mode, str) and parse_mode else None
        if mode is None:
            visible = text
            found = list(entities) if isinstance(entities, list) else []
        elif mode == "html":
            try:
                visible, found = parse_telegram_html(text)
            except HtmlParseError as error:
                raise _bad(f"Bad Request: can't parse entities: {error}") from None
        elif mode in ("markdown", "markdownv2"):
            # Not modelled: the bot never uses Markdown parse modes; only escapes are removed.
            visible, found = re.sub(r"\\(.)", r"\1", text), []
        else:
            raise _bad("Bad Request: unsupported parse_mode")
        visible, found = _strip_formatted(visible, found)
        if empty is not None and not visible:
            raise _bad(empty)
        if utf16_len(visible) > limit:
            raise _bad(too_long)
        return visible, found

    def _reply_markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("Bad Request: can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return None  # reply keyboards are accepted but not part of the Message
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad(
                'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup '
                "must be an Array of Arrays"
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad("Bad Request: text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                    raise _bad("Bad Request: BUTTON_DATA_INVALID")
        return {"inline_keyboard": rows} if any(rows) else None

    def _reply_to(self, chat_id: int, params: dict[str, Any]) -> dict[str, Any] | None:
        reply = params.get("reply_parameters")
        allow_missing = False
        if isinstance(reply, dict):
            target = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, chat_id, str(chat_id)):
                return None  # quoting another chat is not modelled
        else:
            target = params.get("reply_to_message_id")
            allow_missing = _truthy(params.get("allow_sending_without_reply"))
        if target is None:
            return None
        stored = self._chats.get(chat_id, {}).get(_int(target, "message_id"))
        if stored is None:
            if allow_missing:
                return None
            raise _bad("Bad Request: message to be replied not found")
        return {k: v for k, v in stored.message.items() if k != "reply_to_message"}

    def _new_outgoing(self, chat_id: int, params: dict[str, Any]) -> dict[str, Any]:
        reply = self._reply_to(chat_id, params)
        chat = self._chat_dict(chat_id)
        message: dict[str, Any] = {
            "message_id": self._alloc_message_id(chat_id),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
        }
        thread = params.get("message_thread_id")
        if thread is not None:
            message["message_thread_id"] = _int(thread, "message_thread_id")
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        if reply is not None:
            message["reply_to_message"] = reply
        return message

    def _store_outgoing(
        self, message: dict[str, Any], kind: str, extra: dict[str, Any], compare: Any
    ) -> dict[str, Any]:
        chat_id = message["chat"]["id"]
        stored = _Stored(message, kind, outgoing=True, extra=extra, compare=compare)
        self._chats.setdefault(chat_id, {})[message["message_id"]] = stored
        self._outgoing[(chat_id, message["message_id"])] = stored
        return message

    def _target(self, params: dict[str, Any], action: str) -> _Stored | None:
        """The bot message an edit/delete refers to (None for inline messages)."""
        if params.get("inline_message_id"):
            return None
        chat_id = self._chat_id(params)
        message_id = _int(params.get("message_id"), "message_id")
        stored = self._chats.get(chat_id, {}).get(message_id)
        if stored is None:
            raise _bad(f"Bad Request: message to {action} not found")
        if not stored.outgoing and action == "edit":
            raise _bad("Bad Request: message can't be edited")
        return stored

    def _rich(
        self, params: dict[str, Any], *, draft: bool
    ) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """Validated rich_message -> (RichMessage JSON, "_rich_*" extras, comparable source)."""
        rich = params.get("rich_message")
        if rich is None:
            raise _bad("Bad Request: rich_message is required")
        if not isinstance(rich, dict):
            raise _bad("Bad Request: can't parse InputRichMessage JSON object")
        given = [key for key in ("html", "markdown", "blocks") if rich.get(key) is not None]
        if len(given) != 1:
            raise _bad("Bad Request: exactly one of html, markdown or blocks must be specified")
        source = rich[given[0]]
        extra: dict[str, Any]
        if given[0] == "blocks":
            if not isinstance(source, list):
                raise _bad('Bad Request: field "blocks" must be an Array')
            if len(source) > MAX_RICH_BLOCKS:
                raise _bad("Bad Request: too many blocks in the rich message")
            if not draft and _has_thinking(source):
                raise _bad("Bad Request: thinking blocks are allowed only in drafts")
            visible = _rich_plain(source)
            blocks = _blocks_output(source)
            extra = {"_rich_blocks": source}
        elif given[0] == "html":
            if not draft and "<tg-thinking" in source.lower():
                raise _bad("Bad Request: thinking blocks are allowed only in drafts")
            visible = _html_visible(source)
            blocks = [
                {"type": "paragraph", "text": part.strip()}
                for part in visible.split("\n\n")
                if part.strip()
            ]
            extra = {"_rich_html": source}
        else:
            visible = source
            blocks = _markdown_blocks(source)
            extra = {"_rich_markdown": source}
        if not draft and not visible.strip() and not blocks:
            raise _bad("Bad Request: rich message is empty")
        if utf16_len(visible) > MAX_RICH:
            raise _bad("Bad Request: rich message is too long")
        result: dict[str, Any] = {"blocks": blocks}
        if rich.get("is_rtl"):
            result["is_rtl"] = True
        return result, extra, (given[0], json.dumps(source, sort_keys=True))

    def _draft_target(self, params: dict[str, Any]) -> int:
        chat_id = self._chat_id(params)
        draft_id = params.get("draft_id")
        if draft_id is None or _int(draft_id, "draft_id") == 0:
            raise _bad(DRAFT_ID_INVALID)
        if not self._is_private(chat_id):
            raise _bad(DRAFT_PEER_INVALID)
        return chat_id

    # -- sending

    def _send_message(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        text, entities = self._formatted(
            params.get("text"),
            params.get("parse_mode"),
            params.get("entities"),
            limit=MAX_TEXT,
            too_long=TEXT_TOO_LONG,
            empty=TEXT_EMPTY,
        )
        markup = self._reply_markup(params)
        message = self._new_outgoing(chat_id, params)
        message["text"] = text
        if entities:
            message["entities"] = entities
        if markup:
            message["reply_markup"] = markup
        extra = {"_source": params.get("text"), "_parse_mode": params.get("parse_mode")}
        return self._store_outgoing(message, "text", extra, ("text", text, entities))

    def _send_rich_message(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        rich, extra, compare = self._rich(params, draft=False)
        markup = self._reply_markup(params)
        message = self._new_outgoing(chat_id, params)
        message["rich_message"] = rich
        if markup:
            message["reply_markup"] = markup
        return self._store_outgoing(message, "rich", extra, compare)

    def _send_message_draft(self, params: dict[str, Any], call: Call) -> bool:
        self._draft_target(params)
        self._formatted(
            params.get("text"),
            params.get("parse_mode"),
            params.get("entities"),
            limit=MAX_TEXT,
            too_long=TEXT_TOO_LONG,
            empty=None,  # an empty draft shows the "Thinking…" placeholder
        )
        return True

    def _send_rich_message_draft(self, params: dict[str, Any], call: Call) -> bool:
        self._draft_target(params)
        self._rich(params, draft=True)
        return True

    def _send_media(self, kind: str, params: dict[str, Any], call: Call) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        value = params.get(kind)
        if value is None or value == "":
            raise _bad(f"Bad Request: there is no {kind} in the request")
        upload = call.upload(kind)
        if upload is not None:
            filename, content = upload
            if len(content) > MAX_UPLOAD:
                raise ApiError(413, "Request Entity Too Large")
            stored = self._register_file(kind, content, filename)
        elif isinstance(value, str) and value.startswith("attach://"):
            raise _bad(f"Bad Request: there is no {kind} in the request")
        elif isinstance(value, str) and value in self._files:
            stored = self._files[value]
            filename = stored.file_path.rsplit("/", 1)[-1]
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            filename = value.rsplit("/", 1)[-1] or kind
            stored = self._register_file(kind, b"", filename)
        else:
            raise _bad("Bad Request: wrong file identifier/HTTP URL specified")
        caption, caption_entities = self._formatted(
            params.get("caption"),
            params.get("parse_mode"),
            params.get("caption_entities"),
            limit=MAX_CAPTION,
            too_long=CAPTION_TOO_LONG,
            empty=None,
        )
        markup = self._reply_markup(params)
        message = self._new_outgoing(chat_id, params)
        message[kind] = self._media_object(kind, stored, filename, params)
        if caption:
            message["caption"] = caption
        if caption_entities:
            message["caption_entities"] = caption_entities
        if markup:
            message["reply_markup"] = markup
        extra = {"_file_bytes": stored.content, "_filename": filename}
        return self._store_outgoing(message, kind, extra, ("media", kind, stored.file_id))

    def _media_object(self, kind: str, stored: _File, filename: str, params: dict[str, Any]) -> Any:
        base: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.unique_id}
        if stored.content:
            base["file_size"] = len(stored.content)
        duration = _int(params.get("duration"), "duration", 1)
        width = _int(params.get("width"), "width", 640)
        height = _int(params.get("height"), "height", 480)
        mime = _MEDIA[kind][2]
        if kind == "photo":
            thumb = {**base, "file_unique_id": stored.unique_id + "s", "width": 90, "height": 90}
            thumb.pop("file_size", None)
            return [thumb, {**base, "width": 1280, "height": 960}]
        if kind == "voice":
            return {**base, "duration": duration, "mime_type": mime}
        if kind == "audio":
            audio = {**base, "duration": duration, "mime_type": mime, "file_name": filename}
            for key in ("title", "performer"):
                if params.get(key):
                    audio[key] = params[key]
            return audio
        if kind in ("video", "animation"):
            return {
                **base,
                "width": width,
                "height": height,
                "duration": duration,
                "mime_type": mime,
                "file_name": filename,
            }
        return {**base, "file_name": filename, "mime_type": mime}

    def _copy_message(self, params: dict[str, Any], call: Call) -> dict[str, int]:
        chat_id = self._chat_id(params)
        from_chat_id = self._chat_id(params, "from_chat_id")
        message_id = _int(params.get("message_id"), "message_id")
        source = self._chats.get(from_chat_id, {}).get(message_id)
        if source is None:
            raise _bad(COPY_NOT_FOUND)
        original = source.message
        kind = source.kind
        # Text and rich messages have no caption: a `caption` parameter is ignored for them.
        captioned = "text" not in original and "rich_message" not in original
        caption: str = original.get("caption", "")
        caption_entities: list[dict[str, Any]] = original.get("caption_entities", [])
        above = bool(original.get("show_caption_above_media"))
        if captioned and params.get("caption") is not None:
            caption, caption_entities = self._formatted(
                params["caption"],
                params.get("parse_mode"),
                params.get("caption_entities"),
                limit=MAX_CAPTION,
                too_long=CAPTION_TOO_LONG,
                empty=None,
            )
            above = _truthy(params.get("show_caption_above_media"))
        markup = self._reply_markup(params)
        message = self._new_outgoing(chat_id, params)
        for key, value in original.items():
            if key not in _COPY_ENVELOPE:
                message[key] = value
        if captioned and caption:
            message["caption"] = caption
            if caption_entities:
                message["caption_entities"] = caption_entities
            if above:
                message["show_caption_above_media"] = True
        if markup:
            message["reply_markup"] = markup
        if kind == "text":
            compare: Any = ("text", message["text"], message.get("entities", []))
        elif kind in _MEDIA:
            media = message[kind]
            file_id = media[-1]["file_id"] if isinstance(media, list) else media["file_id"]
            compare = ("media", kind, file_id)
        else:
            compare = source.compare
        extra = {**source.extra, "_copied_from": (from_chat_id, message_id)}
        self._store_outgoing(message, kind, extra, compare)
        return {"message_id": message["message_id"]}

    # -- editing and deleting

    def _edit_message_text(self, params: dict[str, Any], call: Call) -> Any:
        has_rich = params.get("rich_message") is not None
        if has_rich:
            rich, extra, compare = self._rich(params, draft=False)
        else:
            text, entities = self._formatted(
                params.get("text"),
                params.get("parse_mode"),
                params.get("entities"),
                limit=MAX_TEXT,
                too_long=TEXT_TOO_LONG,
                empty=TEXT_EMPTY,
            )
            compare = ("text", text, entities)
        markup = self._reply_markup(params)
        stored = self._target(params, "edit")
        if stored is None:
            return True  # inline message
        if stored.kind not in ("text", "rich"):
            raise _bad("Bad Request: there is no text in the message to edit")
        if compare == stored.compare and markup == stored.message.get("reply_markup"):
            raise _bad(NOT_MODIFIED)
        message = {
            k: v
            for k, v in stored.message.items()
            if k not in ("text", "entities", "rich_message", "reply_markup")
        }
        if has_rich:
            message["rich_message"] = rich
            stored.kind = "rich"
            stored.extra = extra
        else:
            message["text"] = text
            if entities:
                message["entities"] = entities
            stored.kind = "text"
            stored.extra = {"_source": params.get("text"), "_parse_mode": params.get("parse_mode")}
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        # Copy-on-write: earlier Call.response bodies keep showing what was answered then.
        stored.message = message
        stored.compare = compare
        stored.edits += 1
        return message

    def _edit_message_reply_markup(self, params: dict[str, Any], call: Call) -> Any:
        markup = self._reply_markup(params)
        stored = self._target(params, "edit")
        if stored is None:
            return True
        if markup == stored.message.get("reply_markup"):
            raise _bad(NOT_MODIFIED)
        message = {k: v for k, v in stored.message.items() if k != "reply_markup"}
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        stored.message = message
        stored.edits += 1
        return message

    def _delete_message(self, params: dict[str, Any], call: Call) -> bool:
        stored = self._target(params, "delete")
        assert stored is not None
        self._forget(stored)
        return True

    def _delete_messages(self, params: dict[str, Any], call: Call) -> bool:
        chat_id = self._chat_id(params)
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("Bad Request: message_ids must be an Array of 1-100 message identifiers")
        chat = self._chats.get(chat_id, {})
        for message_id in ids:
            stored = chat.get(_int(message_id, "message_id"))
            if stored is not None:
                self._forget(stored)
        return True

    def _forget(self, stored: _Stored) -> None:
        chat_id = stored.message["chat"]["id"]
        message_id = stored.message["message_id"]
        self._chats.get(chat_id, {}).pop(message_id, None)
        self._outgoing.pop((chat_id, message_id), None)

    # -- everything else

    def _send_chat_action(self, params: dict[str, Any], call: Call) -> bool:
        self._chat_id(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("Bad Request: wrong parameter action in request")
        return True

    def _answer_callback_query(self, params: dict[str, Any], call: Call) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self._callback_ids:
            raise _bad(QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and len(text) > MAX_CALLBACK_ANSWER:
            raise _bad("Bad Request: MESSAGE_TOO_LONG")
        self._callback_ids.discard(query_id)
        return True

    def _get_file(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        file_id = params.get("file_id")
        if not file_id:
            raise _bad("Bad Request: file_id is empty")
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad("Bad Request: invalid file_id")
        if len(stored.content) > MAX_DOWNLOAD:
            raise _bad("Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.content),
            "file_path": stored.file_path,
        }

    def _set_message_reaction(self, params: dict[str, Any], call: Call) -> bool:
        chat_id = self._chat_id(params)
        if _int(params.get("message_id"), "message_id") not in self._chats.get(chat_id, {}):
            raise _bad("Bad Request: message to react not found")
        return True

    def _get_chat(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        chat = self._chat_dict(self._chat_id(params))
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _get_chat_member(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        user_id = _int(params.get("user_id"), "user_id")
        status = self._member_status.get((chat_id, user_id), "member")
        if user_id == self.bot_id:
            return _chat_member(status, self.bot_user)
        user = self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "User"}
        return _chat_member(status, user)

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope")
        scope_key = json.dumps(scope, sort_keys=True) if isinstance(scope, dict) else "default"
        if scope_key == json.dumps({"type": "default"}):
            scope_key = "default"
        return scope_key, str(params.get("language_code") or "")

    def _set_my_commands(self, params: dict[str, Any], call: Call) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("Bad Request: can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("Bad Request: can't parse BotCommand JSON object")
            if not _BOT_COMMAND_NAME_RE.fullmatch(str(command.get("command", ""))):
                raise _bad("Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._commands_key(params)] = commands
        return True

    def _delete_my_commands(self, params: dict[str, Any], call: Call) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _get_my_commands(self, params: dict[str, Any], call: Call) -> list[dict[str, Any]]:
        return self._commands.get(self._commands_key(params), [])


def _default_description(status: int, retry_after: int | None) -> str:
    if status == 429:
        return f"Too Many Requests: retry after {retry_after}"
    if status == 400:
        return "Bad Request: injected error"
    if status == 403:
        return BOT_BLOCKED
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Injected error"
