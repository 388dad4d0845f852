"""GigaChatAuth: the OAuth exchange, the cached token, refresh ahead of expiry and on a 401,
and failures that never show the authorization key or a token."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs

import httpx
import pytest

from services.llm.errors import AuthFailed, RateLimited, ServiceUnavailable, UpstreamError
from services.llm.gigachat.auth import GigaChatAuth

CREDENTIALS = "Q2xpZW50SUQ6U0VDUkVULWF1dGhvcml6YXRpb24ta2V5"
AUTH_URL = "https://ngw.test:9443/api/v2/oauth"
API = "https://giga.test/api/v1/models"
NOW = 1_700_000_000.0
LIFETIME = 1800.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def bearer(request: httpx.Request) -> str:
    header: str = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ")


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class OAuthServer:
    """The OAuth endpoint and an API that accepts the tokens in `self.valid`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.api_bearers: list[str] = []  # as sent (a re-sent request is the same object)
        self.token_answer: Handler | None = None  # overrides the normal answer
        self.api_answer: Handler | None = None
        self.valid: set[str] = set()
        self.revoke_issued = False  # issued tokens are refused by the API (a 401 each time)

    def issue(self) -> str:
        return f"token-{len(self.token_requests)}"

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == AUTH_URL:
            self.token_requests.append(request)
            await asyncio.sleep(0)  # others may pile up meanwhile
            if self.token_answer is not None:
                return await self.token_answer(request)
            token = self.issue()
            if not self.revoke_issued:
                self.valid.add(token)
            expires_ms = int((self.clock.now + LIFETIME) * 1000)
            return httpx.Response(200, json={"access_token": token, "expires_at": expires_ms})
        self.api_requests.append(request)
        self.api_bearers.append(bearer(request))
        if self.api_answer is not None:
            return await self.api_answer(request)
        if bearer(request) in self.valid:
            return httpx.Response(200, json={"data": []})
        return httpx.Response(401, json={"status": 401, "message": "Unauthorized"})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> OAuthServer:
    return OAuthServer(clock)


@pytest.fixture
async def http(server: OAuthServer) -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    yield client
    await client.aclose()


@pytest.fixture
def auth(http: httpx.AsyncClient, clock: Clock) -> GigaChatAuth:
    return GigaChatAuth(
        http, auth_url=AUTH_URL, credentials=CREDENTIALS, scope="GIGACHAT_API_PERS", clock=clock
    )


async def test_the_token_request_has_the_documented_shape(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    await http.get(API, auth=auth)
    auth.forget("token-1")
    await http.get(API, auth=auth)

    assert len(server.token_requests) == 2
    first, second = server.token_requests
    for request in server.token_requests:
        assert request.method == "POST"
        assert request.headers["Authorization"] == f"Basic {CREDENTIALS}"  # sent as is
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert parse_qs(request.content.decode()) == {"scope": ["GIGACHAT_API_PERS"]}
        assert uuid.UUID(request.headers["RqUID"]).version == 4
    assert first.headers["RqUID"] != second.headers["RqUID"]  # fresh each time


async def test_api_requests_carry_the_bearer_token(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    response = await http.get(API, auth=auth)

    assert response.status_code == 200
    assert server.api_bearers == ["token-1"]


async def test_twenty_concurrent_requests_make_one_token_request(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    responses = await asyncio.gather(*(http.get(API, auth=auth) for _ in range(20)))

    assert [r.status_code for r in responses] == [200] * 20
    assert len(server.token_requests) == 1
    assert set(server.api_bearers) == {"token-1"}


async def test_the_token_is_reused_until_a_minute_before_it_expires(
    auth: GigaChatAuth, server: OAuthServer, clock: Clock
) -> None:
    assert await auth.token() == "token-1"
    clock.now += LIFETIME - 61
    assert await auth.token() == "token-1"
    assert len(server.token_requests) == 1

    clock.now += 2  # 59 s before expiry
    assert await auth.token() == "token-2"
    assert len(server.token_requests) == 2


async def test_the_tok_exp_answer_is_accepted(
    auth: GigaChatAuth, server: OAuthServer, clock: Clock
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        expires = int((clock.now + 600) * 1000)
        return httpx.Response(200, json={"tok": "short-token", "exp": expires})

    server.token_answer = answer
    assert await auth.token() == "short-token"
    clock.now += 600 - 61
    assert await auth.token() == "short-token"
    clock.now += 2
    await auth.token()
    assert len(server.token_requests) == 2


async def test_a_skewed_clock_does_not_fetch_a_token_per_request(
    auth: GigaChatAuth, server: OAuthServer, clock: Clock
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        # The server's idea of "now + 30 min" is already past on this machine's clock.
        return httpx.Response(200, json={"access_token": "t", "expires_at": 1_000_000_000_000})

    server.token_answer = answer
    await auth.token()
    await auth.token()
    assert len(server.token_requests) == 1


async def test_a_401_refreshes_once_and_resends_once(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    await auth.token()
    server.valid.clear()  # token-1 revoked on the server's side

    response = await http.get(API, auth=auth)

    assert response.status_code == 200
    assert len(server.token_requests) == 2
    assert server.api_bearers == ["token-1", "token-2"]


async def test_a_second_401_is_returned_without_more_refreshes(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    server.revoke_issued = True

    response = await http.get(API, auth=auth)

    assert response.status_code == 401
    assert len(server.token_requests) == 2
    assert len(server.api_requests) == 2


class EndlessBody(httpx.AsyncByteStream):
    """A body without end: reading it would never finish (it fails the test instead)."""

    def __init__(self) -> None:
        self.read = False
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield b"x" * 65536
        raise AssertionError("the body of the refused request was read")

    async def aclose(self) -> None:
        self.closed = True


async def test_the_body_of_a_refused_request_is_not_read_before_resending(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    bodies: list[EndlessBody] = []

    async def api(request: httpx.Request) -> httpx.Response:
        if bearer(request) == "token-1":
            bodies.append(EndlessBody())
            return httpx.Response(401, stream=bodies[-1])
        return httpx.Response(200, json={"data": []})

    server.api_answer = api
    response = await http.get(API, auth=auth)

    assert response.status_code == 200
    assert len(bodies) == 1
    assert not bodies[0].read
    assert bodies[0].closed


async def test_concurrent_401s_share_one_refresh(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    await auth.token()
    server.valid.clear()

    responses = await asyncio.gather(*(http.get(API, auth=auth) for _ in range(5)))

    assert [r.status_code for r in responses] == [200] * 5
    assert len(server.token_requests) == 2


def oauth_error(status: int, body: object, headers: dict[str, str] | None = None) -> Handler:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return answer


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, AuthFailed), (401, AuthFailed), (403, AuthFailed), (500, ServiceUnavailable)],
)
async def test_a_refused_token_request_is_classified(
    auth: GigaChatAuth, server: OAuthServer, status: int, kind: type[UpstreamError]
) -> None:
    server.token_answer = oauth_error(status, {"code": 5, "message": "scope is empty"})

    with pytest.raises(kind) as caught:
        await auth.token()

    assert type(caught.value) is kind
    assert caught.value.status == status
    assert "scope is empty" in caught.value.detail


async def test_a_rate_limited_token_request_is_rate_limited(
    auth: GigaChatAuth, server: OAuthServer
) -> None:
    server.token_answer = oauth_error(429, {"message": "Too many requests"}, {"Retry-After": "2"})

    with pytest.raises(RateLimited) as caught:
        await auth.token()

    assert caught.value.retry_after == 2.0


async def test_an_unreachable_oauth_host_is_service_unavailable(
    auth: GigaChatAuth, server: OAuthServer
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server.token_answer = answer

    with pytest.raises(ServiceUnavailable) as caught:
        await auth.token()

    assert caught.value.status is None
    assert "ConnectError" in caught.value.detail


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"expires_at": 1}', b'["token"]', b'{"access_token": ""}'],
)
async def test_a_malformed_token_answer_is_service_unavailable(
    auth: GigaChatAuth, server: OAuthServer, body: bytes
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    server.token_answer = answer

    with pytest.raises(ServiceUnavailable):
        await auth.token()


async def test_callers_queued_behind_a_failing_token_request_share_its_failure(
    auth: GigaChatAuth, server: OAuthServer, http: httpx.AsyncClient
) -> None:
    server.token_answer = oauth_error(500, {"message": "Internal Server Error"})

    results = await asyncio.gather(
        *(http.get(API, auth=auth) for _ in range(10)), return_exceptions=True
    )

    assert all(isinstance(r, ServiceUnavailable) for r in results)
    assert len(server.token_requests) == 1
    assert server.api_requests == []

    server.token_answer = None  # later callers try again
    assert (await http.get(API, auth=auth)).status_code == 200
    assert len(server.token_requests) == 2


async def test_secrets_are_the_key_and_the_current_token(auth: GigaChatAuth) -> None:
    assert auth.secrets() == (CREDENTIALS,)
    token = await auth.token()
    assert auth.secrets() == (CREDENTIALS, token)


async def test_neither_the_key_nor_a_token_shows_in_errors_or_logs(
    auth: GigaChatAuth,
    server: OAuthServer,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await http.get(API, auth=auth)  # a token is issued and used
    auth.forget("token-1")

    async def echoing(request: httpx.Request) -> httpx.Response:
        # A server that quotes the request back in its error.
        echoed = {"message": f"bad header {request.headers['Authorization']}", "tok": "token-1"}
        return httpx.Response(401, content=json.dumps(echoed).encode())

    server.token_answer = echoing
    errors: list[UpstreamError] = []
    with pytest.raises(AuthFailed) as caught:
        await auth.token()
    errors.append(caught.value)

    async def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"access_token": "token-9", "expires_at": "soon"')

    server.token_answer = garbage
    with pytest.raises(ServiceUnavailable) as unavailable:
        await auth.token()
    errors.append(unavailable.value)

    shown = caplog.text + "".join(f"{e} {e!r} {e.detail}" for e in errors) + repr(auth)
    assert CREDENTIALS not in shown
    assert "token-1" not in shown
    assert "token-9" not in shown
    assert "gigachat token request failed" in caplog.text  # the failures were logged


def test_an_empty_key_is_refused(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError):
        GigaChatAuth(http, auth_url=AUTH_URL, credentials="  ", scope="GIGACHAT_API_PERS")


def test_a_sync_client_is_refused(auth: GigaChatAuth) -> None:
    # A sync client would otherwise send the request without any token.
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client, pytest.raises(RuntimeError):
        client.get(API, auth=auth)
