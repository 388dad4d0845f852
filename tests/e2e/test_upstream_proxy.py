"""The upstream behind a proxy and behind a private CA, end to end: LLM_PROXY (HTTP and
SOCKS5, a real proxy server on loopback) carries the streamed chat and the result downloads;
LLM_CA_BUNDLE makes a TLS upstream signed by a private CA trusted."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import Bench, text_of
from tests.fakes.proxy_server import FakeProxy
from tests.fakes.upstream_server import FakeUpstream

USER = 5301


@pytest.fixture
async def cdn() -> AsyncIterator[FakeUpstream]:
    """Another origin serving result files: a download needs a connection of its own."""
    fake = FakeUpstream(api_key="cdn")
    await fake.start()
    yield fake
    await fake.stop()


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("scheme", "auth"),
    [("http", None), ("http", "bot:s3cret"), ("socks5", None), ("socks5", "bot:s3cret")],
)
async def test_chat_and_downloads_go_through_the_proxy(
    bench: Bench, cdn: FakeUpstream, scheme: str, auth: str | None
) -> None:
    async with FakeProxy(scheme, auth=auth) as proxy:  # type: ignore[arg-type]
        await bench.restart(llm_proxy=proxy.url)
        final = await bench.ask(USER, "through the proxy")
        assert text_of(final) == "Echo: through the proxy"  # streamed, via the proxy
        assert proxy.saw(_port(bench.upstream.url))
        assert proxy.users == ([auth] * len(proxy.users) if auth else [])

        bench.upstream.mirror_results_to(cdn)  # the picture lives on another origin
        bench.telegram.send_message(USER, "/image a fox behind a proxy")
        photo = (await bench.telegram.wait_for("sendPhoto", timeout=10))[0]
        assert photo.upload("photo")[1].startswith(b"\x89PNG")
        assert proxy.saw(_port(cdn.url))  # the download went through the proxy too
        assert not proxy.rejected


async def test_a_wrong_proxy_password_fails_with_a_message(bench: Bench) -> None:
    async with FakeProxy("socks5", auth="bot:s3cret") as proxy:
        await bench.restart(llm_proxy=proxy.url.replace("s3cret", "nope"))
        final = await bench.ask(USER, "hello?")
        assert "temporarily unavailable" in text_of(final)
        assert proxy.rejected
        assert not bench.upstream.chat_requests()


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_upstream(private_ca: trustme.CA) -> AsyncIterator[FakeUpstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("localhost").configure_cert(context)
    fake = FakeUpstream(ssl_context=context)
    await fake.start()
    yield fake
    await fake.stop()


async def test_ca_bundle_trusts_a_privately_signed_upstream(
    bench: Bench, tls_upstream: FakeUpstream, private_ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "upstream-ca.pem"
    private_ca.cert_pem.write_to_path(str(bundle))
    # Without the bundle the certificate is refused: the user gets the usual message.
    await bench.restart(llm_base_url=tls_upstream.url)
    refused = await bench.ask(USER, "secure?")
    assert "temporarily unavailable" in text_of(refused)
    assert not tls_upstream.chat_requests()
    # With it, the same upstream answers.
    await bench.restart(llm_base_url=tls_upstream.url, llm_ca_bundle=str(bundle))
    final = await bench.ask(USER, "secure now?")
    assert text_of(final) == "Echo: secure now?"
    assert len(tls_upstream.chat_requests()) == 1
