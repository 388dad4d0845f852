"""The fake GigaChat answers like the real one, refusals included, so tests can trust it."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.clock import FakeClock
from tests.fakes.gigachat_server import (
    BLACKLIST_TEXT,
    DEFAULT_CREDENTIALS,
    FakeGigaChat,
    default_balance,
    default_models,
    tiny_jpeg,
)
from tests.fakes.upstream_server import tiny_png

CLOCK = FakeClock()


@pytest.fixture(scope="module")
async def _server() -> AsyncIterator[FakeGigaChat]:
    async with FakeGigaChat(clock=CLOCK) as server:
        yield server


@pytest.fixture
async def giga(_server: FakeGigaChat) -> FakeGigaChat:
    _server.reset()
    return _server


@pytest.fixture
async def http(giga: FakeGigaChat) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=giga.client_ssl_context(), timeout=5.0) as client:
        yield client


def oauth_headers(
    credentials: str = DEFAULT_CREDENTIALS, rquid: str | None = None
) -> dict[str, str]:
    return {
        "Authorization": f"Basic {credentials}",
        "RqUID": rquid if rquid is not None else str(uuid.uuid4()),
        "Accept": "application/json",
    }


async def get_token(giga: FakeGigaChat, http: httpx.AsyncClient) -> str:
    resp = await http.post(
        giga.auth_url, headers=oauth_headers(), data={"scope": "GIGACHAT_API_PERS"}
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


@pytest.fixture
async def api(giga: FakeGigaChat, http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API with a fresh valid token."""
    token = await get_token(giga, http)
    async with httpx.AsyncClient(
        base_url=giga.base_url,
        verify=giga.client_ssl_context(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=5.0,
    ) as client:
        yield client


def chat_body(text: str = "hi", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "GigaChat-2-Max",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 100,
        "stream": stream,
    }
    body.update(extra)
    return body


async def read_events(response: httpx.Response) -> list[Any]:
    """Decoded SSE data payloads; "[DONE]" stays a string."""
    events: list[Any] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def stream_events(api: httpx.AsyncClient, body: dict[str, Any]) -> list[Any]:
    async with api.stream("POST", "/chat/completions", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        return await read_events(resp)


async def upload(api: httpx.AsyncClient, content: bytes, content_type: str = "image/jpeg") -> str:
    resp = await api.post(
        "/files",
        files={"file": ("photo.jpg", content, content_type)},
        data={"purpose": "general"},
    )
    assert resp.status_code == 200, resp.text
    file_id: str = resp.json()["id"]
    return file_id


# --- TLS ------------------------------------------------------------------------------------


async def test_https_with_the_test_ca_only(giga: FakeGigaChat) -> None:
    pem = await asyncio.to_thread(Path(giga.ca_pem_path).read_text)
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert giga.base_url.startswith("https://127.0.0.1:") and giga.base_url.endswith("/api/v1")
    assert giga.auth_url == giga.origin + "/api/v2/oauth"
    localhost = giga.origin.replace("127.0.0.1", "localhost")
    async with httpx.AsyncClient(verify=giga.client_ssl_context()) as trusting:
        for origin in (giga.origin, localhost):  # the certificate names both
            assert (await trusting.get(origin + "/api/v1/models")).status_code == 401
    async with httpx.AsyncClient() as default_store:  # certifi does not know the test CA
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await default_store.get(giga.base_url + "/models")


# --- OAuth ----------------------------------------------------------------------------------


async def test_oauth_issues_a_token_in_milliseconds(
    giga: FakeGigaChat, http: httpx.AsyncClient
) -> None:
    resp = await http.post(
        giga.auth_url, headers=oauth_headers(), data={"scope": "GIGACHAT_API_PERS"}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"access_token", "expires_at"}
    assert body["expires_at"] == int((CLOCK.now + 30 * 60) * 1000)
    assert giga.token_requests == giga.tokens_issued == 1

    (rec,) = giga.requests_to("oauth")
    assert rec.auth_scheme == "Basic" and rec.form == {"scope": "GIGACHAT_API_PERS"}
    assert DEFAULT_CREDENTIALS not in json.dumps(rec.headers)  # secrets are masked in records

    giga.legacy_token_fields = True
    giga.token_lifetime = 5
    resp = await http.post(
        giga.auth_url, headers=oauth_headers(), data={"scope": "GIGACHAT_API_PERS"}
    )
    assert set(resp.json()) == {"tok", "exp"}
    assert resp.json()["exp"] == int((CLOCK.now + 5) * 1000)


WRONG_KEY = base64.b64encode(b"someone:else").decode()


@pytest.mark.parametrize(
    ("headers", "form", "status", "body"),
    [
        (
            oauth_headers(WRONG_KEY),
            {"scope": "GIGACHAT_API_PERS"},
            401,
            {"code": 6, "message": "credentials doesn't match db data"},
        ),
        (
            oauth_headers("not base64!"),
            {"scope": "GIGACHAT_API_PERS"},
            401,
            {"code": 4, "message": "Can't decode 'Authorization' header"},
        ),
        (
            {"RqUID": str(uuid.uuid4())},
            {"scope": "GIGACHAT_API_PERS"},
            401,
            {"code": 4, "message": "Can't decode 'Authorization' header"},
        ),
        (
            {"Authorization": f"Basic {DEFAULT_CREDENTIALS}"},
            {"scope": "GIGACHAT_API_PERS"},
            400,
            {"message": "RqUID must be a uuid4"},
        ),
        (
            oauth_headers(rquid=str(uuid.uuid1())),
            {"scope": "GIGACHAT_API_PERS"},
            400,
            {"message": "RqUID must be a uuid4"},
        ),
        (oauth_headers(), {}, 400, {"code": 5, "message": "scope is empty"}),
        (
            oauth_headers(),
            {"scope": "GIGACHAT"},
            400,
            {"code": 1, "message": "scope data format invalid"},
        ),
        (
            oauth_headers(),
            {"scope": "GIGACHAT_API_CORP"},
            400,
            {"code": 7, "message": "scope from db not fully includes consumed scope"},
        ),
    ],
    ids=[
        "wrong-key",
        "not-base64",
        "no-auth",
        "no-rquid",
        "uuid1",
        "no-scope",
        "bad-scope",
        "other-scope",
    ],
)
async def test_oauth_refusals(
    giga: FakeGigaChat,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    form: dict[str, str],
    status: int,
    body: dict[str, Any],
) -> None:
    resp = await http.post(giga.auth_url, headers=headers, data=form)
    assert (resp.status_code, resp.json()) == (status, body)
    assert giga.token_requests == 1 and giga.tokens_issued == 0


# --- tokens on the API ----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer made-up", f"Basic {DEFAULT_CREDENTIALS}"])
async def test_api_needs_a_valid_bearer_token(
    giga: FakeGigaChat, http: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/models"), ("POST", "/chat/completions"), ("GET", "/balance")):
        resp = await http.request(method, giga.base_url + path, headers=headers, json=chat_body())
        assert (resp.status_code, resp.json()) == (401, {"status": 401, "message": "Unauthorized"})


async def test_tokens_expire_on_the_clock_and_all_at_once(
    giga: FakeGigaChat, http: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    expired = {"status": 401, "message": "Token has expired"}
    assert (await api.get("/models")).status_code == 200
    CLOCK.now += 30 * 60  # the token's lifetime is over
    resp = await api.get("/models")
    assert (resp.status_code, resp.json()) == (401, expired)

    giga.token_lifetime = 60
    first, second = await get_token(giga, http), await get_token(giga, http)
    giga.expire_all_tokens()
    for token in (first, second):
        resp = await http.get(
            giga.base_url + "/models", headers={"Authorization": f"Bearer {token}"}
        )
        assert (resp.status_code, resp.json()) == (401, expired)
    fresh = await get_token(giga, http)  # tokens issued afterwards work
    resp = await http.get(giga.base_url + "/models", headers={"Authorization": f"Bearer {fresh}"})
    assert resp.status_code == 200
    assert giga.token_requests == 4


async def test_reject_next_token_forces_401s(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    giga.reject_next_token(2)
    statuses = [(await api.get("/models")).status_code for _ in range(3)]
    assert statuses == [401, 401, 200]


# --- models, balance, embeddings ------------------------------------------------------------


async def test_models(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    body = (await api.get("/models")).json()
    assert body == {"object": "list", "data": default_models()}
    assert body["data"][0] == {
        "id": "GigaChat-2",
        "object": "model",
        "owned_by": "salutedevices",
        "type": "chat",
    }
    giga.models = [{"id": "GigaChat-2", "object": "model", "type": "chat"}]
    assert [m["id"] for m in (await api.get("/models")).json()["data"]] == ["GigaChat-2"]
    resp = await api.post("/chat/completions", json=chat_body())  # Max is no longer known
    assert (resp.status_code, resp.json()) == (404, {"status": 404, "message": "No such model"})


async def test_balance_and_pay_as_you_go(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    resp = await api.get("/balance")
    assert resp.json() == {"balance": default_balance()}
    assert resp.json()["balance"][1] == {"usage": "GigaChat-Pro", "value": 991490}
    giga.pay_as_you_go = True
    resp = await api.get("/balance")
    assert (resp.status_code, resp.json()) == (403, {"status": 403, "message": "Permission denied"})


async def test_embeddings(api: httpx.AsyncClient) -> None:
    resp = await api.post("/embeddings", json={"model": "Embeddings", "input": ["a", "b", "a"]})
    body = resp.json()
    assert body["object"] == "list" and body["model"] == "Embeddings"
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert vectors[0] == vectors[2] != vectors[1]
    assert all(-1 <= x <= 1 for x in vectors[0])

    resp = await api.post("/embeddings", json={"model": "GigaChat-2", "input": ["a"]})
    assert (resp.status_code, resp.json()["message"]) == (404, "No such model")
    resp = await api.post("/embeddings", json={"model": "Embeddings", "input": []})
    assert resp.status_code == 422


# --- chat -----------------------------------------------------------------------------------


async def test_non_streamed_answer_has_gigachats_shape(api: httpx.AsyncClient) -> None:
    resp = await api.post("/chat/completions", json=chat_body("hello world", model="GigaChat"))
    assert resp.status_code == 200
    body = resp.json()
    assert "id" not in body
    assert body["object"] == "chat.completion"
    assert body["model"] == "GigaChat:2.0.28.2"  # an alias of GigaChat-2, named with its version
    assert body["choices"] == [
        {
            "message": {"content": "Echo: hello world", "role": "assistant"},
            "index": 0,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "total_tokens": 8,
        "precached_prompt_tokens": 0,
    }


async def test_stream_has_gigachats_shape(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    giga.chunks = 3
    events = await stream_events(api, chat_body("hello world"))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) == 3
    for event in chunks:
        assert "id" not in event
        assert event["object"] == "chat.completion"
        assert event["model"] == "GigaChat-Max:2.0.28.2"
        assert event["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"]["content"] for e in chunks) == "Echo: hello world"
    assert [e["choices"][0].get("finish_reason") for e in chunks] == [None, None, "stop"]
    assert [("usage" in e) for e in chunks] == [False, False, True]
    assert chunks[-1]["usage"]["precached_prompt_tokens"] == 0
    (rec,) = giga.chat_requests()
    assert rec.completed and rec.chunks_sent == 3 and not rec.disconnected
    assert rec.messages == [{"role": "user", "content": "hello world"}]


async def test_scripted_blacklisted_and_cut_answers(
    giga: FakeGigaChat, api: httpx.AsyncClient
) -> None:
    giga.script_next("Да", ", конечно", finish_reason="stop")
    giga.blacklist_next()
    giga.length_next()
    events = await stream_events(api, chat_body())
    assert [e["choices"][0]["delta"]["content"] for e in events[:-1]] == ["Да", ", конечно"]

    events = await stream_events(api, chat_body("политика"))
    last = events[-2]["choices"][0]
    assert (last["delta"]["content"], last["finish_reason"]) == (BLACKLIST_TEXT, "blacklist")

    body = (await api.post("/chat/completions", json=chat_body())).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "Echo: hi"

    # With nothing scripted, a reply longer than max_tokens is cut like the model would.
    body = (await api.post("/chat/completions", json=chat_body("x" * 100, max_tokens=5))).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == ("Echo: " + "x" * 100)[:20]


SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (
            {"stream_options": {"include_usage": True}},
            422,
            "Invalid params: unknown field 'stream_options'",
        ),
        ({"presence_penalty": 0.5}, 422, "Invalid params: unknown field 'presence_penalty'"),
        ({"model": "gpt-4o-mini"}, 404, "No such model"),
        ({"model": "Embeddings"}, 404, "No such model"),
        ({"messages": []}, 422, "Invalid params: messages must be a non-empty array"),
        (
            {"messages": [SYSTEM, SYSTEM, USER]},
            422,
            "Invalid params: only one system message is allowed",
        ),
        ({"messages": [USER, SYSTEM]}, 422, "system message must be the first message"),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            422,
            "Invalid params: messages[0].role must be one of system, user, assistant, function",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            422,
            "Invalid params: messages[0].content must be a string",
        ),
        (
            {"messages": [{"role": "user", "content": "  "}]},
            422,
            "Invalid params: messages[0].content must not be empty",
        ),
        (
            {"messages": [{"role": "function", "content": "not json"}]},
            422,
            "Invalid params: messages[0].content must be a JSON object",
        ),
        (
            {"messages": [{**USER, "images": ["x"]}]},
            422,
            "Invalid params: messages[0]: unknown field 'images'",
        ),
        (
            {"messages": [{**USER, "attachments": ["a", "b"]}]},
            422,
            "Invalid params: only one image can be attached to a message",
        ),
        (
            {"messages": [{**USER, "attachments": ["no-such-file"]}]},
            422,
            "Invalid params: file no-such-file not found",
        ),
        ({"max_tokens": "100"}, 422, "Invalid params: max_tokens must be a positive integer"),
        ({"max_tokens": 0}, 422, "Invalid params: max_tokens must be a positive integer"),
        ({"stream": "true"}, 422, "Invalid params: stream must be a boolean"),
        (
            {"repetition_penalty": 0},
            422,
            "Invalid params: repetition_penalty must be in range (0, +inf)",
        ),
        ({"top_p": 1.5}, 422, "Invalid params: top_p must be in range [0, 1]"),
        ({"temperature": -1}, 422, "Invalid params: temperature must be in range [0, +inf)"),
        (
            {"function_call": "sometimes"},
            422,
            "Invalid params: function_call must be 'auto', 'none' or {\"name\": ...}",
        ),
    ],
)
async def test_chat_refuses_what_the_real_api_refuses(
    giga: FakeGigaChat,
    api: httpx.AsyncClient,
    change: dict[str, Any],
    status: int,
    message: str,
) -> None:
    resp = await api.post("/chat/completions", json={**chat_body(), **change})
    assert (resp.status_code, resp.json()) == (status, {"status": status, "message": message})
    assert giga.chat_requests()[0].status == status


async def test_chat_needs_a_json_body(api: httpx.AsyncClient) -> None:
    resp = await api.post("/chat/completions", content=b"model=GigaChat-2")
    assert resp.status_code == 400
    assert resp.json()["status"] == 400


async def test_attachments_one_per_message_ten_per_request(
    giga: FakeGigaChat, api: httpx.AsyncClient
) -> None:
    ids = [await upload(api, tiny_jpeg()) for _ in range(11)]
    messages = [{"role": "user", "content": f"photo {i}", "attachments": [i]} for i in ids]
    resp = await api.post("/chat/completions", json=chat_body(messages=messages))
    assert resp.json() == {
        "status": 422,
        "message": "Invalid params: at most 10 images per request",
    }

    resp = await api.post("/chat/completions", json=chat_body(messages=[SYSTEM, *messages[1:]]))
    assert resp.status_code == 200
    assert giga.chat_requests()[-1].attachments == ids[1:]


async def test_size_limits_of_images_and_requests(
    giga: FakeGigaChat, api: httpx.AsyncClient
) -> None:
    jpeg_start = tiny_jpeg()[:3]
    resp = await api.post(
        "/files",
        files={"file": ("big.jpg", jpeg_start + bytes(15 * 1024 * 1024), "image/jpeg")},
        data={"purpose": "general"},
    )
    assert (resp.status_code, resp.json()) == (413, {"status": 413, "message": "Payload too large"})

    half = jpeg_start + bytes(10 * 1024 * 1024)  # two of them pass 20 MB together
    ids = [await upload(api, half) for _ in range(2)]
    messages = [{"role": "user", "content": "look", "attachments": [i]} for i in ids]
    resp = await api.post("/chat/completions", json=chat_body(messages=messages))
    assert (resp.status_code, resp.json()) == (413, {"status": 413, "message": "Payload too large"})
    resp = await api.post("/chat/completions", json=chat_body(messages=messages[:1]))
    assert resp.status_code == 200


async def test_concurrent_chats_beyond_max_streams_get_429(
    giga: FakeGigaChat, api: httpx.AsyncClient
) -> None:
    giga.hold_answers()
    async with api.stream("POST", "/chat/completions", json=chat_body(stream=True)) as first:
        assert first.status_code == 200  # headers are out; the answer waits
        assert giga.in_flight == 1
        resp = await api.post("/chat/completions", json=chat_body())
        assert (resp.status_code, resp.json()) == (
            429,
            {"status": 429, "message": "Too many requests"},
        )
        assert (await api.get("/models")).status_code == 200  # only chats are counted
        giga.release_answers()
        assert (await read_events(first))[-1] == "[DONE]"
    assert giga.in_flight == 0
    assert (await api.post("/chat/completions", json=chat_body())).status_code == 200
    assert (giga.max_in_flight, giga.rejected_429) == (1, 1)

    giga.max_streams = 2
    giga.hold_answers()
    async with (
        api.stream("POST", "/chat/completions", json=chat_body(stream=True)) as a,
        api.stream("POST", "/chat/completions", json=chat_body(stream=True)) as b,
    ):
        assert (a.status_code, b.status_code, giga.max_in_flight) == (200, 200, 2)
        giga.release_answers()
        await read_events(a)
        await read_events(b)


async def test_a_client_that_goes_away_is_noticed(
    giga: FakeGigaChat, api: httpx.AsyncClient
) -> None:
    giga.hold_answers()
    async with api.stream("POST", "/chat/completions", json=chat_body(stream=True)) as resp:
        assert resp.status_code == 200
    # Leaving the block closes the connection before the answer came.
    (rec,) = giga.chat_requests()
    await asyncio.wait_for(rec.disconnected_event.wait(), 2.0)
    assert rec.disconnected and not rec.completed
    assert giga.in_flight == 0


async def test_drawing_with_function_call_auto(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    events = await stream_events(api, chat_body("Нарисуй кота", function_call="auto"))
    in_progress, final, done = events
    assert in_progress["choices"][0]["delta"]["role"] == "function_in_progress"
    assert in_progress["choices"][0]["delta"]["name"] == "text2image"
    (file_id,) = giga.drawn_files
    assert final["choices"][0]["delta"]["content"] == f'<img src="{file_id}" fuse="true"/>'
    assert final["choices"][0]["finish_reason"] == "stop" and "usage" in final
    assert done == "[DONE]"

    image = await api.get(f"/files/{file_id}/content")
    assert image.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(image.content)) as picture:
        assert picture.format == "JPEG"

    # draw_next(): any text draws, but only with function_call "auto" and no own functions.
    giga.draw_next()
    plain = (await api.post("/chat/completions", json=chat_body("котик"))).json()
    assert plain["choices"][0]["message"]["content"] == "Echo: котик"
    functions = [{"name": "f", "parameters": {"type": "object", "properties": {}}}]
    own = chat_body("котик", function_call="auto", functions=functions)
    assert "<img" not in (await api.post("/chat/completions", json=own)).text
    drawn = await api.post("/chat/completions", json=chat_body("котик", function_call="auto"))
    message = drawn.json()["choices"][0]["message"]
    assert message["content"] == f'<img src="{giga.drawn_files[-1]}" fuse="true"/>'
    assert "functions_state_id" in message
    assert len(giga.drawn_files) == 2


async def test_file_upload_takes_images_only(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    jpeg = tiny_jpeg()
    resp = await api.post(
        "/files", files={"file": ("cat.jpg", jpeg, "image/jpeg")}, data={"purpose": "general"}
    )
    body = resp.json()
    assert set(body) >= {"id", "object", "bytes", "created_at", "filename", "purpose"}
    assert (body["object"], body["bytes"], body["filename"], body["purpose"]) == (
        "file",
        len(jpeg),
        "cat.jpg",
        "general",
    )
    uuid.UUID(body["id"])
    assert (await api.get(f"/files/{body['id']}/content")).content == jpeg
    assert giga.file_content(body["id"]) == jpeg
    assert await upload(api, tiny_png(), "image/png")

    refused = [
        ({"file": ("a.gif", b"GIF89a....", "image/gif")}, {"purpose": "general"}),
        ({"file": ("a.webp", b"RIFF....WEBP", "image/webp")}, {"purpose": "general"}),
        ({"file": ("a.txt", b"hello", "text/plain")}, {"purpose": "general"}),
        ({"file": ("a.jpg", tiny_png(), "image/jpeg")}, {"purpose": "general"}),  # mislabelled
        ({"file": ("a.jpg", jpeg, "image/jpeg")}, {}),  # no purpose
    ]
    for files, data in refused:
        resp = await api.post("/files", files=files, data=data)
        assert resp.status_code == 422, files
        assert resp.json()["status"] == 422
    resp = await api.get(f"/files/{uuid.uuid4()}/content")
    assert (resp.status_code, resp.json()) == (404, {"status": 404, "message": "File not found"})


async def test_wait_for_requests(giga: FakeGigaChat, api: httpx.AsyncClient) -> None:
    waiting = asyncio.create_task(giga.wait_for_requests(2, path="chat/completions"))
    await api.get("/models")
    await api.post("/chat/completions", json=chat_body())
    assert not waiting.done()  # one chat so far
    await api.post("/chat/completions", json=chat_body())
    assert len(await asyncio.wait_for(waiting, 2.0)) == 2
    with pytest.raises(TimeoutError):
        await giga.wait_for_requests(5, timeout=0.01)


async def test_fail_next(
    giga: FakeGigaChat, http: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    giga.fail_next(503, times=2, headers={"Retry-After": "1"})
    giga.fail_next(500, "boom", path="oauth")
    for _ in range(2):
        resp = await api.post("/chat/completions", json=chat_body())
        assert (resp.status_code, resp.json()) == (
            503,
            {"status": 503, "message": "Service Unavailable"},
        )
        assert resp.headers["retry-after"] == "1"
    assert (await api.post("/chat/completions", json=chat_body())).status_code == 200
    resp = await http.post(
        giga.auth_url, headers=oauth_headers(), data={"scope": "GIGACHAT_API_PERS"}
    )
    assert (resp.status_code, resp.json()) == (500, {"status": 500, "message": "boom"})
    assert await get_token(giga, http)
