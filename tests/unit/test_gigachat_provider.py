"""The GigaChat provider as `build_gigachat()` wires it, against a fake GigaChat on
httpx.MockTransport: streamed chat, pictures, slots, drawing, models, balance, embeddings."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from services.llm.breaker import CircuitBreaker
from services.llm.errors import (
    AuthFailed,
    BadRequest,
    BalanceUnavailable,
    InsufficientFunds,
    ModerationRefused,
    RateLimited,
    ResponseTooLarge,
    ServiceUnavailable,
)
from services.llm.gigachat import GigaChatProvider, build_gigachat
from services.llm.gigachat.auth import GigaChatAuth
from services.llm.gigachat.files import GigaChatFiles
from services.llm.limiter import FairRateLimiter
from services.llm.media import ImageResult
from services.llm.provider import BalanceSource, ChatBackend, Embedder, ImageMaker, TokenBalance
from services.llm.retry import RetryPolicy
from services.llm.transport import UpstreamTransport
from services.llm.turns import Turn
from services.llm.types import StreamChunk

BASE = "https://giga.test/api/v1"
AUTH_URL = "https://ngw.test:9443/api/v2/oauth"
CREDENTIALS = "Q2xpZW50SUQ6U0VDUkVULWF1dGhvcml6YXRpb24ta2V5"
MODEL_STAMP = "GigaChat:2.0.28.2"
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg-bytes"
PNG = b"\x89PNG\r\n\x1a\n" + b"png-bytes"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


# --- GigaChat's wire shapes --------------------------------------------------------------------


def event(obj: Any) -> bytes:
    return (
        f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()
    )


def chunk(content: str, *, role: str = "assistant", **extra: Any) -> bytes:
    # GigaChat's chunks: no "id", "object": "chat.completion".
    choice: dict[str, Any] = {"delta": {"content": content, "role": role}, "index": 0}
    choice.update(extra)
    return event(
        {
            "choices": [choice],
            "created": 1768996174,
            "model": MODEL_STAMP,
            "object": "chat.completion",
        }
    )


def last_chunk(finish: str = "stop") -> bytes:
    return event(
        {
            "choices": [
                {"delta": {"content": "", "role": "assistant"}, "index": 0, "finish_reason": finish}
            ],
            "created": 1768996174,
            "model": MODEL_STAMP,
            "object": "chat.completion",
            "usage": {
                "prompt_tokens": 17,
                "completion_tokens": 3,
                "total_tokens": 20,
                "precached_prompt_tokens": 2,
            },
        }
    )


DONE = event("[DONE]")


class Parts(httpx.AsyncByteStream):
    """A streamed body: `head` at once, `tail` only once `opened` is set (at once by default)."""

    def __init__(
        self, head: list[bytes], tail: Sequence[bytes] = (), *, gated: bool = False
    ) -> None:
        self.head, self.tail = head, list(tail)
        self.opened = asyncio.Event()
        if not gated:
            self.opened.set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.head:
            yield part
        await self.opened.wait()
        for part in self.tail:
            yield part


Reply = Callable[[], httpx.Response]  # a fresh response per request: bodies are read once


def streamed(body: Parts) -> Reply:
    return lambda: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)


def sse(*parts: bytes) -> Reply:
    return lambda: streamed(Parts(list(parts)))()


def answer(*texts: str, finish: str = "stop") -> Reply:
    return sse(*(chunk(t) for t in texts), last_chunk(finish), DONE)


def gated(*texts: str) -> tuple[Parts, Reply]:
    """A stream that stops after its first texts until its gate opens."""
    body = Parts([chunk(t) for t in texts], [last_chunk(), DONE], gated=True)
    return body, streamed(body)


def failure(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "message": message})


def error(status: int, message: str) -> Reply:
    return lambda: failure(status, message)


class FakeGigaChat:
    """OAuth host and API; `chat` answers POST /chat/completions (a list plays in order)."""

    def __init__(self) -> None:
        self.token_requests = 0
        self.valid_token = "tok-1"
        self.requests: list[tuple[str, str]] = []  # (method, path) of API calls
        self.chat_bodies: list[dict[str, Any]] = []
        self.uploads: list[httpx.Request] = []
        self.files: dict[str, bytes] = {}
        self.chat: list[Reply] = []
        self.routes: dict[tuple[str, str], Handler] = {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == AUTH_URL:
            self.token_requests += 1
            token = f"tok-{self.token_requests}"
            return httpx.Response(
                200, json={"access_token": token, "expires_at": 4_000_000_000_000}
            )
        # As sent: a quoted "/" stays quoted.
        path = request.url.raw_path.decode().partition("?")[0].removeprefix("/api/v1")
        self.requests.append((request.method, path))
        if request.headers.get("Authorization") != f"Bearer {self.valid_token}":
            return failure(401, "Token has expired")
        route = self.routes.get((request.method, path))
        if route is not None:
            return await route(request)
        if path == "/chat/completions":
            self.chat_bodies.append(json.loads(request.content))
            reply = self.chat.pop(0) if len(self.chat) > 1 else self.chat[0]
            return reply()
        if request.method == "POST" and path == "/files":
            await request.aread()
            self.uploads.append(request)
            file_id = f"file-{len(self.uploads)}"
            return httpx.Response(200, json={"id": file_id, "object": "file", "purpose": "general"})
        if request.method == "GET" and path.startswith("/files/") and path.endswith("/content"):
            data = self.files.get(path.split("/")[2])
            return httpx.Response(200, content=data) if data else failure(404, "File not found")
        return failure(404, "Not found")

    def answer_chat(self, *replies: Reply) -> None:
        """Replies to chat requests in order; the last one repeats."""
        self.chat = list(replies)


@pytest.fixture
def fake() -> FakeGigaChat:
    return FakeGigaChat()


@pytest.fixture
async def http(fake: FakeGigaChat) -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    yield client
    await client.aclose()


async def no_sleep(seconds: float) -> None:
    return None


def build(http: httpx.AsyncClient, *, max_streams: int = 1, retries: int = 0) -> GigaChatProvider:
    return build_gigachat(
        http,
        base_url=BASE,
        auth_url=AUTH_URL,
        credentials=CREDENTIALS,
        scope="GIGACHAT_API_PERS",
        max_streams=max_streams,
        breaker=CircuitBreaker(),
        retry=RetryPolicy(max_retries=retries),
        sleep=no_sleep,
        queue_notice_after=0.0,
    )


@pytest.fixture
def giga(http: httpx.AsyncClient) -> GigaChatProvider:
    return build(http)


async def collect(giga: GigaChatProvider, turns: list[Turn], **kwargs: Any) -> list[StreamChunk]:
    stream = giga.chat.stream_chat(model="GigaChat-2", turns=turns, max_tokens=100, **kwargs)
    async with aclosing(stream) as chunks:
        return [c async for c in chunks]


HI = [Turn("user", "hi")]


def test_the_pieces_implement_the_provider_protocols(giga: GigaChatProvider) -> None:
    assert isinstance(giga.chat, ChatBackend)
    assert isinstance(giga.images, ImageMaker)
    assert isinstance(giga.balance_source, BalanceSource)
    assert isinstance(giga.embeddings, Embedder)


# --- chat ----------------------------------------------------------------------------------------


async def test_a_stream_in_gigachats_shape_gives_chunks_and_usage(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(answer("Hel", "lo."))

    chunks = await collect(giga, [Turn("system", "Be brief."), *HI], temperature=0.5)

    assert "".join(c.text for c in chunks) == "Hello."
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (17, 3)
    assert final.usage.total_tokens == 20
    body = fake.chat_bodies[0]
    assert "stream_options" not in body  # GigaChat does not know it
    assert body["stream"] is True
    assert body["model"] == "GigaChat-2"
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.5
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


async def test_a_refused_topic_ends_as_refused(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    fake.answer_chat(answer("I would rather not talk about that.", finish="blacklist"))

    chunks = await collect(giga, HI)

    assert chunks[-1].finish_reason == "refused"


async def test_length_is_kept(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    fake.answer_chat(answer("Once upon a", finish="length"))

    assert (await collect(giga, HI))[-1].finish_reason == "length"


async def test_progress_notes_of_built_in_functions_are_left_out(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(
        sse(
            chunk("About 10 seconds left", role="function_in_progress", name="text2image"),
            chunk("Here", role="assistant"),
            chunk("5 seconds left", role="function_in_progress", name="text2image"),
            chunk(" it is."),
            last_chunk("function_call"),
            DONE,
        )
    )

    chunks = await collect(giga, HI)

    assert "".join(c.text for c in chunks) == "Here it is."
    assert chunks[-1].finish_reason == "stop"


async def test_pictures_are_uploaded_once_and_attached_one_per_message(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(answer("Two cats."))
    asked = Turn("user", "what is here?", images=(JPEG, PNG))

    await collect(giga, [asked])
    await collect(giga, [asked, Turn("assistant", "Two cats."), Turn("user", "and the colours?")])

    assert len(fake.uploads) == 2  # the follow-up re-sent the same pictures: not uploaded again
    expected = [
        {"role": "user", "content": "what is here?", "attachments": ["file-1"]},
        {"role": "user", "content": "(image 2)", "attachments": ["file-2"]},
    ]
    assert fake.chat_bodies[0]["messages"] == expected
    assert fake.chat_bodies[1]["messages"][:2] == expected


async def test_errors_are_classified_the_gigachat_way(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    # The generic rules would read "quota" in a 429 as a funds problem.
    fake.answer_chat(error(429, "Request quota exceeded"))
    with pytest.raises(RateLimited):
        await collect(giga, HI)

    fake.answer_chat(error(402, "Payment Required"))
    with pytest.raises(InsufficientFunds):
        await collect(giga, HI)


async def test_an_expired_token_is_replaced_and_the_stream_resent(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(answer("ok"))
    await collect(giga, HI)
    fake.valid_token = "tok-2"  # tok-1 expired early on the server's side

    chunks = await collect(giga, HI)

    assert "".join(c.text for c in chunks) == "ok"
    assert fake.token_requests == 2
    # The first stream, then the refused one and its re-send.
    assert fake.requests.count(("POST", "/chat/completions")) == 3


async def test_a_key_refused_twice_is_auth_failed(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.valid_token = "never"
    fake.answer_chat(answer("unreachable"))

    with pytest.raises(AuthFailed):
        await collect(giga, HI)

    assert fake.token_requests == 2
    assert fake.requests.count(("POST", "/chat/completions")) == 2


async def test_an_upload_refused_with_a_401_is_resent_whole(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    await giga.auth.token()
    fake.valid_token = "tok-2"

    file_id = await giga.files.upload_image(JPEG)

    assert file_id == "file-1"
    assert JPEG in fake.uploads[0].content


# --- slots ---------------------------------------------------------------------------------------


async def test_a_second_stream_waits_while_the_first_is_open(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    gate, first_reply = gated("first")
    fake.answer_chat(first_reply, answer("second"))
    positions: list[int] = []

    async def on_wait(position: int) -> None:
        positions.append(position)

    first = giga.chat.stream_chat(model="GigaChat-2", turns=HI, max_tokens=10, user_key=1)
    assert (await anext(first)).text == "first"  # the first stream is open
    second = asyncio.create_task(collect(giga, HI, user_key=2, on_wait=on_wait))
    for _ in range(20):
        await asyncio.sleep(0)

    assert not second.done()
    assert len(fake.chat_bodies) == 1  # the second request was not sent
    assert giga.slots.queued == 1
    assert positions == [1]

    gate.opened.set()
    rest = [c async for c in first]
    assert rest[-1].finish_reason == "stop"
    chunks = await second
    assert "".join(c.text for c in chunks) == "second"
    assert giga.slots.in_use == 0


async def test_a_failed_stream_frees_its_slot(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    fake.answer_chat(error(422, "Invalid params: temperature"), answer("fine"))

    with pytest.raises(BadRequest):
        await collect(giga, HI)
    chunks = await asyncio.wait_for(collect(giga, HI), timeout=5)

    assert chunks[0].text == "fine"
    assert giga.slots.in_use == 0


async def test_a_stream_closed_early_frees_its_slot(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(answer("a", "b", "c"))
    stream = giga.chat.stream_chat(model="GigaChat-2", turns=HI, max_tokens=10)
    await anext(stream)
    assert giga.slots.in_use == 1

    await stream.aclose()

    assert giga.slots.in_use == 0


async def test_streams_up_to_the_limit_run_at_once(
    http: httpx.AsyncClient, fake: FakeGigaChat
) -> None:
    giga = build(http, max_streams=2)
    (gate_0, reply_0), (gate_1, reply_1) = gated("0"), gated("1")
    fake.answer_chat(reply_0, reply_1)
    streams = [
        giga.chat.stream_chat(model="GigaChat-2", turns=HI, max_tokens=10, user_key=n)
        for n in range(2)
    ]

    firsts = await asyncio.gather(*(anext(s) for s in streams))

    assert [c.text for c in firsts] == ["0", "1"]
    assert giga.slots.in_use == 2
    gate_0.opened.set()
    gate_1.opened.set()
    for stream in streams:
        async for _ in stream:
            pass


# --- files ---------------------------------------------------------------------------------------


async def test_an_upload_is_multipart_with_purpose_general(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    await giga.files.upload_image(JPEG)
    await giga.files.upload_image(PNG)

    jpeg, png = fake.uploads
    assert jpeg.headers["Content-Type"].startswith("multipart/form-data")
    body = jpeg.content
    assert b'name="purpose"\r\n\r\ngeneral' in body
    assert b'name="file"; filename="image.jpg"\r\nContent-Type: image/jpeg' in body
    assert JPEG in body
    assert b'filename="image.png"\r\nContent-Type: image/png' in png.content


async def test_the_upload_cache_is_bounded(http: httpx.AsyncClient, fake: FakeGigaChat) -> None:
    auth = GigaChatAuth(http, auth_url=AUTH_URL, credentials=CREDENTIALS, scope="GIGACHAT_API_PERS")
    transport = UpstreamTransport(
        http,
        BASE,
        limiter=FairRateLimiter(0),
        breaker=CircuitBreaker(),
        retry=RetryPolicy(max_retries=0),
        app_title=None,
        sleep=no_sleep,
        auth=auth,
    )
    files = GigaChatFiles(transport, cache_size=2)
    pictures = [JPEG + bytes([n]) for n in range(3)]

    ids = [await files.upload_image(p) for p in pictures]
    assert await files.upload_image(pictures[2]) == ids[2]  # remembered
    assert await files.upload_image(pictures[1]) == ids[1]
    again = await files.upload_image(pictures[0])  # forgotten: uploaded anew

    assert len(fake.uploads) == 4
    assert again == "file-4"


async def test_a_download_is_capped(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    fake.files["big"] = b"x" * 1000

    assert await giga.files.download("big", max_bytes=1000) == b"x" * 1000
    with pytest.raises(ResponseTooLarge):
        await giga.files.download("big", max_bytes=999)


async def test_a_missing_file_is_a_bad_request_not_a_missing_model(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    with pytest.raises(BadRequest) as caught:
        await giga.files.download("gone")

    assert type(caught.value) is BadRequest


async def test_a_file_id_is_quoted_into_the_path(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    with pytest.raises(BadRequest):
        await giga.files.download("../balance")

    assert fake.requests[-1] == ("GET", "/files/..%2Fbalance/content")


# --- drawing -------------------------------------------------------------------------------------


def drawing_reply(content: str, finish: str = "function_call") -> Reply:
    return lambda: httpx.Response(
        200,
        json={
            "choices": [
                {
                    "message": {
                        "content": content,
                        "role": "assistant",
                        "functions_state_id": "77d3fb14-457a-46ba-937e-8d856156d003",
                    },
                    "index": 0,
                    "finish_reason": finish,
                }
            ],
            "created": 1768996174,
            "model": MODEL_STAMP,
            "object": "chat.completion",
            "usage": {"prompt_tokens": 30, "completion_tokens": 40, "total_tokens": 70},
        },
    )


async def test_a_drawing_is_parsed_from_the_img_tag_and_downloaded(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.files["3c6a4e5b-1f2d-4c8e-9a7b-0d1e2f3a4b5c"] = JPEG
    fake.answer_chat(
        drawing_reply('Вот кот: <img src="3c6a4e5b-1f2d-4c8e-9a7b-0d1e2f3a4b5c" fuse="true"/> -')
    )
    accepts: list[str] = []

    async def content(request: httpx.Request) -> httpx.Response:
        accepts.append(request.headers.get("Accept", ""))
        return httpx.Response(200, content=JPEG)

    fake.routes[("GET", "/files/3c6a4e5b-1f2d-4c8e-9a7b-0d1e2f3a4b5c/content")] = content

    result = await giga.images.generate_image("a cat", model="GigaChat-2-Max", size="1024x1024")

    assert result == ImageResult(url=None, data=JPEG)
    body = fake.chat_bodies[0]
    assert body["function_call"] == "auto"
    assert body["model"] == "GigaChat-2-Max"
    # Asked to draw in so many words: the model calls its text2image function when asked.
    assert body["messages"][-1] == {"role": "user", "content": "Нарисуй: a cat"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "stream" not in body
    assert accepts == ["application/jpg"]


async def test_an_answer_without_a_drawing_is_a_bad_request(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(drawing_reply("I cannot draw a cat right now.", finish="stop"))

    with pytest.raises(BadRequest) as caught:
        await giga.images.generate_image("a cat", model="GigaChat-2")

    assert "drew nothing" in caught.value.detail
    assert "cat" not in caught.value.detail  # the model's words may quote the prompt


async def test_a_refused_drawing_is_moderation_refused(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    fake.answer_chat(drawing_reply("Не могу.", finish="blacklist"))

    with pytest.raises(ModerationRefused):
        await giga.images.generate_image("something forbidden", model="GigaChat-2")


async def test_drawing_waits_for_a_slot(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    gate, busy = gated("busy")
    fake.files["f"] = JPEG
    fake.answer_chat(busy, drawing_reply('<img src="f" fuse="true"/>'))
    chat = giga.chat.stream_chat(model="GigaChat-2", turns=HI, max_tokens=10, user_key=1)
    await anext(chat)

    drawing = asyncio.create_task(giga.images.generate_image("a cat", model="GigaChat-2"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not drawing.done()
    assert len(fake.chat_bodies) == 1

    gate.opened.set()
    async for _ in chat:
        pass
    assert (await drawing).data == JPEG


# --- account -------------------------------------------------------------------------------------


async def test_models_carry_their_kind(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    async def models(request: httpx.Request) -> httpx.Response:
        data = [
            {
                "id": "GigaChat-2-Max",
                "object": "model",
                "owned_by": "salutedevices",
                "type": "chat",
            },
            {
                "id": "Embeddings",
                "object": "model",
                "owned_by": "salutedevices",
                "type": "embedder",
            },
            {"id": "GigaCheck", "object": "model", "owned_by": "salutedevices", "type": "aicheck"},
            {"object": "model"},  # no id: skipped
        ]
        return httpx.Response(200, json={"object": "list", "data": data})

    fake.routes[("GET", "/models")] = models

    listed = await giga.list_models()

    assert [(m.id, m.kind, m.context_length) for m in listed] == [
        ("GigaChat-2-Max", "chat", None),
        ("Embeddings", "embedding", None),
        ("GigaCheck", "aicheck", None),
    ]
    assert [m.id for m in listed if m.is_chat] == ["GigaChat-2-Max"]
    assert await giga.chat.list_models() == listed


async def test_the_balance_is_tokens_per_model(giga: GigaChatProvider, fake: FakeGigaChat) -> None:
    async def balance(request: httpx.Request) -> httpx.Response:
        items = [
            {"usage": "GigaChat", "value": 50000},
            {"usage": "GigaChat-Pro", "value": "991490"},
            {"usage": "", "value": 1},  # nameless: skipped
        ]
        return httpx.Response(200, json={"balance": items})

    fake.routes[("GET", "/balance")] = balance

    assert await giga.balance_source.balance() == TokenBalance(
        per_model=(("GigaChat", 50000.0), ("GigaChat-Pro", 991490.0))
    )


async def test_a_pay_as_you_go_account_has_no_balance(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    async def balance(request: httpx.Request) -> httpx.Response:
        return failure(403, "Permission denied")

    fake.routes[("GET", "/balance")] = balance

    with pytest.raises(BalanceUnavailable) as caught:
        await giga.balance_source.balance()

    assert "pay-as-you-go" in caught.value.detail


async def test_embeddings_come_back_in_the_order_of_the_texts(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    sent: list[dict[str, Any]] = []

    async def embeddings(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        data = [
            {"object": "embedding", "embedding": [0.0, 1.0], "index": 1},
            {"object": "embedding", "embedding": [1.0, 0], "index": 0},
        ]
        return httpx.Response(200, json={"object": "list", "data": data, "model": "Embeddings"})

    fake.routes[("POST", "/embeddings")] = embeddings

    vectors = await giga.embeddings.embed(["a", "b"], model="Embeddings")

    assert vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert sent == [{"model": "Embeddings", "input": ["a", "b"]}]


async def test_an_embeddings_answer_with_too_few_vectors_is_refused(
    giga: GigaChatProvider, fake: FakeGigaChat
) -> None:
    async def embeddings(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"embedding": [1.0], "index": 0}]})

    fake.routes[("POST", "/embeddings")] = embeddings

    with pytest.raises(ServiceUnavailable):
        await giga.embeddings.embed(["a", "b"], model="Embeddings")


# --- secrets -------------------------------------------------------------------------------------


async def test_neither_the_key_nor_the_token_shows_in_errors_or_logs(
    giga: GigaChatProvider, fake: FakeGigaChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await giga.auth.token()
    # Error answers that quote the request's credentials back.
    echo = f"bad credentials {CREDENTIALS} / Bearer {token}"
    fake.answer_chat(error(400, echo))

    async def balance(request: httpx.Request) -> httpx.Response:
        return failure(500, echo)

    async def content(request: httpx.Request) -> httpx.Response:
        return failure(503, echo)

    fake.routes[("GET", "/balance")] = balance
    fake.routes[("GET", "/files/f/content")] = content

    raised = []
    for call in (collect(giga, HI), giga.balance_source.balance(), giga.files.download("f")):
        with pytest.raises((BadRequest, ServiceUnavailable)) as caught:
            await call
        raised.append(caught.value)

    shown = caplog.text + repr(giga.auth) + "".join(f"{e} {e!r}" for e in raised)
    assert CREDENTIALS not in shown
    assert token not in shown
    assert "bad credentials" in raised[0].detail  # the rest of the message is kept
    assert "upstream request failed: provider=gigachat" in caplog.text
