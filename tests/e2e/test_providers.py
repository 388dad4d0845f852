"""Three providers at once: VseGPT (the primary fake), GigaChat over HTTPS with its own CA and
OAuth, and MashaGPT, each chosen per user, each failing alone."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from tests.e2e.conftest import ADMIN_ID, Bench, text_of
from tests.e2e.test_media import png_bytes, send_photo
from tests.fakes.gigachat_server import BLACKLIST_TEXT, FakeGigaChat
from tests.fakes.mashagpt_server import FakeMashaGPT

USER = 4242


@pytest.fixture(scope="session")
async def gigachat() -> AsyncIterator[FakeGigaChat]:
    fake = FakeGigaChat()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def masha() -> AsyncIterator[FakeMashaGPT]:
    fake = FakeMashaGPT()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def multi(bench: Bench, gigachat: FakeGigaChat, masha: FakeMashaGPT) -> Bench:
    gigachat.reset()
    masha.reset()
    await bench.restart(
        gigachat_credentials=gigachat.credentials,
        gigachat_base_url=gigachat.base_url,
        gigachat_auth_url=gigachat.auth_url,
        gigachat_ca_bundle=gigachat.ca_pem_path,
        gigachat_max_streams=1,
        mashagpt_api_key=masha.api_key,
        mashagpt_base_url=masha.url,
    )
    return bench


async def choose(bench: Bench, user: int, model: str) -> str:
    return text_of(await bench.ask(user, f"/model {model}"))


async def test_one_conversation_across_three_providers_keeps_its_history(
    multi: Bench, gigachat: FakeGigaChat, masha: FakeMashaGPT
) -> None:
    await multi.ask(USER, "first question for VseGPT")
    assert "gigachat:GigaChat-2-Max" in await choose(multi, USER, "gigachat:GigaChat-2-Max")
    answer = await multi.ask(USER, "second question for GigaChat")
    assert text_of(answer)
    sent = gigachat.chat_requests()[-1]
    assert sent.json["model"] == "GigaChat-2-Max"  # the provider's own id, not the namespaced one
    texts = [m["content"] for m in sent.messages]
    assert sent.messages[0]["role"] == "system"
    assert [m["role"] for m in sent.messages].count("system") == 1
    assert "first question for VseGPT" in texts and texts[-1] == "second question for GigaChat"
    assert "stream_options" not in sent.json  # GigaChat answers 422 to it

    await choose(multi, USER, "mashagpt:gpt-4o")
    await multi.ask(USER, "third question for MashaGPT")
    request = masha.chat_requests()[-1]
    assert request.json["model"] == "gpt-4o"
    contents = [m["content"] for m in request.json["messages"]]
    assert "first question for VseGPT" in contents
    assert "second question for GigaChat" in contents
    assert contents[-1] == "third question for MashaGPT"


async def test_twenty_concurrent_gigachat_questions_one_token_and_the_stream_limit(
    multi: Bench, gigachat: FakeGigaChat
) -> None:
    users = [USER + n for n in range(20)]
    for user in users:
        await choose(multi, user, "gigachat:GigaChat-2")
    before = gigachat.token_requests
    gigachat.expire_all_tokens()  # the token the model list used is gone: all need a new one
    answers = await asyncio.gather(*(multi.ask(u, f"question {u}", timeout=30) for u in users))
    assert all(text_of(a) for a in answers)
    assert gigachat.token_requests - before == 1
    assert gigachat.max_in_flight <= 1
    assert gigachat.rejected_429 == 0


async def test_expired_token_and_forced_401_each_cost_one_refresh(
    multi: Bench, gigachat: FakeGigaChat
) -> None:
    await choose(multi, USER, "gigachat:GigaChat-2")
    await multi.ask(USER, "warm up")
    start = gigachat.token_requests
    gigachat.expire_all_tokens()
    assert text_of(await multi.ask(USER, "after expiry"))
    assert gigachat.token_requests == start + 1
    gigachat.reject_next_token(1)
    assert text_of(await multi.ask(USER, "after a 401"))
    assert gigachat.token_requests == start + 2


async def test_blacklisted_topic_is_refused_politely_and_kept_out_of_history(
    multi: Bench, gigachat: FakeGigaChat
) -> None:
    await choose(multi, USER, "gigachat:GigaChat-2")
    gigachat.blacklist_next()
    refused = text_of(await multi.ask(USER, "a forbidden topic"))
    assert "declined" in refused and BLACKLIST_TEXT not in refused
    await multi.ask(USER, "an ordinary question")
    texts = [m["content"] for m in gigachat.chat_requests()[-1].messages]
    assert "a forbidden topic" not in texts
    assert all(BLACKLIST_TEXT not in t for t in texts)


async def test_gigachat_vision_uploads_files_and_attaches_one_per_message(
    multi: Bench, gigachat: FakeGigaChat
) -> None:
    await multi.restart(vision_model="gigachat:GigaChat-2-Max")
    send_photo(multi, png_bytes("red"), user=USER, caption="Compare", media_group_id="a1")
    send_photo(multi, png_bytes("blue"), user=USER, media_group_id="a1")
    await multi.telegram.wait_for(
        ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == USER, timeout=15
    )
    uploads = gigachat.requests_to("files")
    assert len(uploads) == 2
    sent = gigachat.chat_requests()[-1]
    assert sent.json["model"] == "GigaChat-2-Max"
    with_files = [m for m in sent.messages if m.get("attachments")]
    assert len(with_files) == 2 and all(len(m["attachments"]) == 1 for m in with_files)


@pytest.mark.parametrize(
    ("model", "drawn_by"),
    [
        ("dall-e-3", "vsegpt"),
        ("gigachat:GigaChat-2-Max", "gigachat"),
        ("mashagpt:flux-pro", "masha"),
    ],
)
async def test_image_command_on_each_provider(
    multi: Bench, gigachat: FakeGigaChat, masha: FakeMashaGPT, model: str, drawn_by: str
) -> None:
    await multi.restart(image_model=model, video_poll_seconds=0.1)
    multi.telegram.send_message(USER, "/image a red fox")
    photo = (await multi.telegram.wait_for("sendPhoto", timeout=15))[0]
    _, data = photo.upload("photo")
    assert Image.open(io.BytesIO(data)).format in ("PNG", "JPEG")
    if drawn_by == "gigachat":
        request = gigachat.chat_requests()[-1]
        assert request.json.get("function_call") == "auto"
    elif drawn_by == "masha":
        assert any(task.body.get("prompt") == "a red fox" for task in masha.tasks.values())
    else:
        assert any(r.path.endswith("/images/generations") for r in multi.upstream.requests)


async def test_one_provider_failing_leaves_the_others_answering(
    multi: Bench, gigachat: FakeGigaChat
) -> None:
    other = USER + 100
    await choose(multi, USER, "gigachat:GigaChat-2")
    gigachat.fail_next(500, "Internal Server Error", times=50)
    failed, fine = await asyncio.gather(
        multi.ask(USER, "to gigachat", timeout=20), multi.ask(other, "to vsegpt", timeout=20)
    )
    assert "to gigachat" not in text_of(failed)
    assert text_of(fine)
    assert multi.upstream.requests  # the primary provider answered


async def test_provider_menu_and_balances(multi: Bench) -> None:
    multi.telegram.send_message(USER, "/model")
    menu = (await multi.telegram.wait_for("sendMessage", lambda c: c.chat_id == USER, timeout=10))[
        0
    ]
    # Opens on the current model's provider, with the way back to the providers.
    rows = menu.params["reply_markup"]["inline_keyboard"]
    assert [b for row in rows for b in row if "Providers" in b["text"]]
    assert "openai/gpt-4o-mini" in menu.params["text"]
    # A partial id finds models of every provider.
    found = text_of(await multi.ask(USER, "/model GigaChat-2-M"))
    assert "gigachat:GigaChat-2-Max" in found

    multi.telegram.send_message(ADMIN_ID, "/balance")
    shown = (
        await multi.telegram.wait_for("sendMessage", lambda c: c.chat_id == ADMIN_ID, timeout=10)
    )[0].params["text"]
    assert "10.75" in shown  # VseGPT's credits
    assert "GigaChat" in shown and "991" in shown  # tokens left per model


async def test_mashagpt_energy_is_counted_in_usage(multi: Bench, masha: FakeMashaGPT) -> None:
    await choose(multi, USER, "mashagpt:gpt-4o-mini")
    await multi.ask(USER, "how much energy?")
    assert masha.chat_requests()[-1].auth_headers
    multi.telegram.send_message(USER, "/usage")
    usage = await multi.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == USER and "MashaGPT" in c.params["text"]
    )
    assert "energy" in usage[0].params["text"].lower()


async def test_a_gigachat_only_bot_answers_and_voice_says_it_needs_a_provider(
    bench: Bench, gigachat: FakeGigaChat
) -> None:
    gigachat.reset()
    await bench.restart(
        llm_api_key="",
        default_model="gigachat:GigaChat-2",
        gigachat_credentials=gigachat.credentials,
        gigachat_base_url=gigachat.base_url,
        gigachat_auth_url=gigachat.auth_url,
        gigachat_ca_bundle=gigachat.ca_pem_path,
    )
    assert text_of(await bench.ask(USER, "hello GigaChat"))
    assert gigachat.chat_requests()[-1].json["model"] == "GigaChat-2"
    # No provider turns speech into text: a voice note gets a short explanation...
    bench.telegram.send_voice(USER, b"OggS" + bytes(64), duration=2)
    note = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == USER and "speech provider" in c.params["text"]
    )
    assert note
    # ...and /settings offers no voice options.
    settings = await bench.ask(USER, "/settings")
    buttons = [b["text"] for row in settings.params["reply_markup"]["inline_keyboard"] for b in row]
    assert not [b for b in buttons if "oice" in b or "reply" in b.lower()]
    assert not bench.upstream.requests


async def test_a_stored_model_of_a_gone_provider_falls_back_with_a_note(
    multi: Bench, masha: FakeMashaGPT
) -> None:
    await choose(multi, USER, "mashagpt:gpt-4o-mini")
    await multi.restart(mashagpt_api_key="")
    await multi.ask(USER, "still there?")
    notes = [text_of(c) for c in multi.finals(USER)]
    assert any("no longer available" in n for n in notes)
    before = len(masha.chat_requests())
    await multi.ask(USER, "and now?")
    assert len(masha.chat_requests()) == before
    assert sum("no longer available" in text_of(c) for c in multi.finals(USER)) == 1


async def test_a_server_without_the_video_api_says_so_plainly(bench: Bench) -> None:
    # LiteLLM, Ollama and the like have no /video: their 404 names no model.
    bench.upstream.fail_next(404, {"detail": "Not Found"}, path="video/generate")
    bench.telegram.send_message(USER, "/video a cat on a roof")
    shown = await bench.telegram.wait_for(
        ("editMessageText", "sendMessage"),
        lambda c: "does not offer" in str(c.params.get("text", "")),
        timeout=10,
    )
    assert shown
    bench.upstream.fail_next(404, {"detail": "Not Found"}, path="images/generations")
    bench.telegram.send_message(USER, "/image a cat")
    drawn = await bench.telegram.wait_for(
        "sendMessage",
        lambda c: "does not offer" in str(c.params.get("text", "")),
        count=1,
        timeout=10,
    )
    assert drawn


async def test_a_task_api_picture_survives_a_restart(multi: Bench, masha: FakeMashaGPT) -> None:
    # MashaGPT draws through its task API: the picture is a stored job, like a video.
    masha.task_steps = ["PENDING", "PROCESSING", "PROCESSING", "COMPLETED"]
    await multi.restart(image_model="mashagpt:flux-pro", video_poll_seconds=30)
    multi.telegram.send_message(USER, "/image 16:9 a lighthouse at night")
    await multi.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == USER and "Picture request" in c.params["text"]
    )
    await masha.wait_for_requests(1, timeout=10, path="tasks/flux-pro")
    task = next(iter(masha.tasks.values()))
    assert task.body == {"prompt": "a lighthouse at night", "aspectRatio": "16:9"}
    # Stopped before the picture was drawn; the next start picks the job up and delivers it.
    await multi.restart(video_poll_seconds=0.1)
    photo = (await multi.telegram.wait_for("sendPhoto", timeout=15))[0]
    assert photo.params["caption"] == "a lighthouse at night"
    done = await multi.telegram.wait_for(
        "editMessageText", lambda c: "picture is ready" in c.params.get("text", ""), timeout=10
    )
    assert done
    assert len(masha.tasks) == 1  # paid for once
