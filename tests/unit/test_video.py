from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pytest

from services.llm.errors import (
    BadRequest,
    InsufficientFunds,
    ServiceUnavailable,
    UpstreamError,
)
from services.storage import SQLiteStorage, VideoJob
from services.video import OneVideoMaker, TooManyVideoJobs, VideoService

# Enough of a JPEG for the format check (its magic bytes).
JPEG = b"\xff\xd8\xff\xe0" + bytes(16)

POLL = 0.01
VIDEO = b"\x00\x00\x00\x18ftypmp42 fake mp4 bytes"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class State(StrEnum):  # mirrors services.llm.media.VideoState
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Status:
    state: State | str
    url: str | None = None
    reason: str | None = None


QUEUED = Status(State.IN_QUEUE)
RUNNING = Status(State.IN_PROGRESS)


def done(request_id: str = "vid-1") -> Status:
    return Status(State.COMPLETED, url=f"https://cdn.example/{request_id}.mp4")


class FakeMedia:
    """Implements the VideoMediaClient protocol. ``script`` is replayed per request id; its
    last item repeats. Exceptions in it are raised."""

    def __init__(self, script: list[Status | Exception] | None = None) -> None:
        self.script: list[Status | Exception] = script or [QUEUED, RUNNING, done()]
        self.started: list[dict[str, Any]] = []
        self.polls: dict[str, int] = {}
        self.downloads: list[tuple[str, int]] = []
        self.start_error: BaseException | None = None
        self.start_gate: asyncio.Event | None = None
        self.download_error: Exception | None = None
        self.video = VIDEO

    async def start_video(
        self,
        prompt: str,
        *,
        model: str,
        aspect_ratio: str | None = None,
        image_url: str | None = None,
        user_key: Hashable = None,
    ) -> str:
        self.started.append(
            {
                "prompt": prompt,
                "model": model,
                "aspect_ratio": aspect_ratio,
                "image_url": image_url,
                "user_key": user_key,
            }
        )
        if self.start_gate is not None:
            await self.start_gate.wait()
        if self.start_error is not None:
            raise self.start_error
        return f"vid-{len(self.started)}"

    async def video_status(self, request_id: str) -> Status:
        n = self.polls.get(request_id, 0)
        self.polls[request_id] = n + 1
        item = self.script[min(n, len(self.script) - 1)]
        if isinstance(item, Exception):
            raise item
        return item

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        self.downloads.append((url, max_bytes))
        if self.download_error is not None:
            raise self.download_error
        if len(self.video) > max_bytes:
            raise UpstreamError(None, "result is larger than the limit")
        return self.video


@dataclass
class FakeNotifier:
    progress_calls: list[tuple[VideoJob, float]] = field(default_factory=list)
    completed_calls: list[tuple[VideoJob, bytes | None]] = field(default_factory=list)
    failed_calls: list[VideoJob] = field(default_factory=list)
    progress_error: Exception | None = None
    completed_failures: int = 0  # how many completed() calls raise before one succeeds
    failed_error: Exception | None = None

    async def progress(self, job: VideoJob, elapsed: float) -> None:
        self.progress_calls.append((job, elapsed))
        if self.progress_error is not None:
            raise self.progress_error

    async def completed(self, job: VideoJob, video: bytes | None) -> None:
        self.completed_calls.append((job, video))
        if self.completed_failures > 0:
            self.completed_failures -= 1
            raise RuntimeError("telegram refused the upload")

    async def failed(self, job: VideoJob) -> None:
        self.failed_calls.append(job)
        if self.failed_error is not None:
            raise self.failed_error


async def eventually(predicate: Callable[[], bool], within: float = 3.0) -> None:
    async def wait() -> None:
        while not predicate():  # noqa: ASYNC110 - polls state of background pollers
            await asyncio.sleep(0.002)

    try:
        async with asyncio.timeout(within):
            await wait()
    except TimeoutError:
        raise AssertionError("condition not reached in time") from None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def storage(clock: FakeClock) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(":memory:", clock=clock)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def media() -> FakeMedia:
    return FakeMedia()


@pytest.fixture
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
async def make_service(
    storage: SQLiteStorage, media: FakeMedia, notifier: FakeNotifier, clock: FakeClock
) -> AsyncIterator[Callable[..., VideoService]]:
    services: list[VideoService] = []

    def make(**kw: Any) -> VideoService:
        options: dict[str, Any] = {
            "default_model": "txt2vid-kling/standart",
            "poll_seconds": POLL,
            "clock": clock,
        }
        options.update(kw)
        service = VideoService(storage, OneVideoMaker(media), **options)
        service.set_notifier(notifier)
        services.append(service)
        return service

    yield make
    for service in services:
        await service.close()


async def submit(service: VideoService, user_id: int = 1, **kw: Any) -> VideoJob:
    args: dict[str, Any] = {
        "user_id": user_id,
        "chat_id": 100 + user_id,
        "thread_id": None,
        "prompt": "a panda playing guitar",
        "lang": "en",
        "progress_message_id": 9,
    }
    args.update(kw)
    return await service.submit(**args)


async def stored(storage: SQLiteStorage, job_id: int) -> VideoJob:
    return await storage.update_video_job(job_id)  # no fields: a plain read


# -------------------------------------------------------------------------------- happy path


async def test_happy_path_delivers_downloaded_video(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    service = make_service(download_limit=1000)
    job = await submit(service, thread_id=4)
    assert (job.state, job.request_id, job.model) == ("IN_QUEUE", "vid-1", "txt2vid-kling/standart")
    assert (job.chat_id, job.thread_id, job.progress_message_id, job.lang) == (101, 4, 9, "en")
    assert media.started == [
        {
            "prompt": "a panda playing guitar",
            "model": "txt2vid-kling/standart",
            "aspect_ratio": None,
            "image_url": None,
            "user_key": 1,
        }
    ]

    await eventually(lambda: bool(notifier.completed_calls))
    delivered_job, video = notifier.completed_calls[0]
    assert video == VIDEO
    assert delivered_job.state == "COMPLETED" and delivered_job.url == done().url
    assert media.downloads == [(done().url, 1000)]
    await eventually(lambda: service.active_pollers == 0)
    final = await stored(storage, job.id)
    assert final.state == "DELIVERED" and final.url == done().url
    assert notifier.failed_calls == []
    assert [j.state for j, _ in notifier.progress_calls] == ["IN_QUEUE", "IN_PROGRESS"]
    assert media.polls == {"vid-1": 3}  # no polling after completion
    assert await storage.active_video_jobs() == []


async def test_submit_passes_model_image_and_aspect_ratio(
    make_service: Callable[..., VideoService], media: FakeMedia
) -> None:
    media.script = [RUNNING]
    service = make_service()
    job = await submit(
        service,
        model="img2vid-kling/pro",
        image=JPEG,
        aspect_ratio="9:16",
        user_id=5,
    )
    assert job.model == "img2vid-kling/pro"
    assert service.default_model == "txt2vid-kling/standart"
    assert media.started[0]["model"] == "img2vid-kling/pro"
    # The service, not the handler, puts the picture in the provider's shape (a data URL).
    assert media.started[0]["image_url"] == "data:image/jpeg;base64," + base64.b64encode(
        JPEG
    ).decode("ascii")
    assert media.started[0]["aspect_ratio"] == "9:16"
    assert media.started[0]["user_key"] == 5


async def test_job_is_stored_before_the_upstream_is_called(
    make_service: Callable[..., VideoService], storage: SQLiteStorage, media: FakeMedia
) -> None:
    media.start_gate = asyncio.Event()
    service = make_service()
    task = asyncio.create_task(submit(service))
    await eventually(lambda: bool(media.started))
    (pending,) = await storage.active_video_jobs()
    assert (pending.state, pending.request_id) == ("submitting", None)
    # start() during a submission must not grab the job as "interrupted".
    await service.start()
    assert (await stored(storage, pending.id)).state == "submitting"
    media.start_gate.set()
    job = await task
    assert job.id == pending.id and job.state == "IN_QUEUE"


async def test_progress_reports_elapsed_time(
    make_service: Callable[..., VideoService],
    media: FakeMedia,
    notifier: FakeNotifier,
    clock: FakeClock,
) -> None:
    media.script = [RUNNING]
    service = make_service()
    await submit(service)
    await eventually(lambda: len(notifier.progress_calls) >= 1)
    clock.now += 42
    count = len(notifier.progress_calls)
    await eventually(lambda: len(notifier.progress_calls) > count)
    assert notifier.progress_calls[-1][1] == 42


# ----------------------------------------------------------------------------- failures


async def test_upstream_failure_is_reported_with_reason(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [QUEUED, Status(State.FAILED, reason="content policy violation")]
    service = make_service()
    job = await submit(service)
    await eventually(lambda: bool(notifier.failed_calls))
    (failed,) = notifier.failed_calls
    assert (failed.id, failed.state, failed.reason) == (
        job.id,
        "FAILED",
        "content policy violation",
    )
    await eventually(lambda: service.active_pollers == 0)
    assert (await stored(storage, job.id)).state == "FAILED"
    assert notifier.completed_calls == []
    assert media.polls == {"vid-1": 2}


async def test_timeout_marks_job_and_stops_polling(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
    clock: FakeClock,
) -> None:
    media.script = [RUNNING]
    service = make_service(timeout_minutes=20)
    job = await submit(service)
    await eventually(lambda: media.polls.get("vid-1", 0) >= 2)
    assert notifier.failed_calls == []
    clock.now += 20 * 60 + 1  # the injected clock jumps past the deadline
    await eventually(lambda: bool(notifier.failed_calls))
    (failed,) = notifier.failed_calls
    assert (failed.id, failed.state) == (job.id, "TIMEOUT")
    await eventually(lambda: service.active_pollers == 0)
    polls = media.polls["vid-1"]
    await asyncio.sleep(POLL * 5)
    assert media.polls["vid-1"] == polls
    assert (await stored(storage, job.id)).state == "TIMEOUT"


async def test_result_found_after_long_downtime_is_delivered_not_timed_out(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
    clock: FakeClock,
) -> None:
    job = await storage.create_video_job(
        user_id=1,
        chat_id=1,
        thread_id=None,
        model="m",
        prompt="p",
        lang="ru",
        progress_message_id=None,
    )
    await storage.update_video_job(job.id, request_id="vid-1", state="IN_PROGRESS")
    clock.now += 3 * 3600
    media.script = [done()]
    service = make_service(timeout_minutes=20)
    await service.start()
    await eventually(lambda: bool(notifier.completed_calls))
    assert notifier.failed_calls == []


async def test_submit_error_marks_job_error_notifies_and_reraises(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.start_error = InsufficientFunds(402, "not enough credits")
    service = make_service()
    with pytest.raises(InsufficientFunds):
        await submit(service)
    (failed,) = notifier.failed_calls
    assert failed.state == "ERROR" and "not enough credits" in (failed.reason or "")
    assert (await stored(storage, failed.id)).state == "ERROR"
    assert await storage.count_active_video_jobs(1) == 0  # the slot is free again
    assert service.active_pollers == 0
    assert media.polls == {}


async def test_unexpected_submit_error_frees_the_slot(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.start_error = KeyError("request_id")
    service = make_service()
    with pytest.raises(KeyError):
        await submit(service)
    assert await storage.count_active_video_jobs(1) == 0
    assert notifier.failed_calls == []  # the handler reports non-upstream errors itself


async def test_cancelled_submit_frees_the_slot(
    make_service: Callable[..., VideoService], storage: SQLiteStorage, media: FakeMedia
) -> None:
    media.start_gate = asyncio.Event()
    service = make_service()
    task = asyncio.create_task(submit(service))
    await eventually(lambda: bool(media.started))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await storage.count_active_video_jobs(1) == 0


async def test_transient_poll_errors_are_retried(
    make_service: Callable[..., VideoService],
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [
        ServiceUnavailable(503, "busy"),
        RUNNING,
        ServiceUnavailable(None, "connection reset"),
        RuntimeError("unexpected payload"),
        Status("SOMETHING_NEW"),  # unknown states mean "still running"
        done(),
    ]
    service = make_service()
    await submit(service)
    await eventually(lambda: bool(notifier.completed_calls))
    assert notifier.failed_calls == []
    assert media.polls["vid-1"] == 6


async def test_permanent_poll_errors_end_the_job(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [BadRequest(404, "unknown request_id")]
    service = make_service()
    job = await submit(service)
    await eventually(lambda: bool(notifier.failed_calls))
    (failed,) = notifier.failed_calls
    assert failed.state == "ERROR" and "unknown request_id" in (failed.reason or "")
    assert media.polls["vid-1"] == 3  # a few tries, not until the timeout
    assert (await stored(storage, job.id)).state == "ERROR"


async def test_download_failure_sends_link_instead(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [done()]
    media.download_error = ServiceUnavailable(None, "cdn unreachable")
    service = make_service()
    job = await submit(service)
    await eventually(lambda: bool(notifier.completed_calls))
    assert notifier.completed_calls[0][1] is None
    await eventually(lambda: service.active_pollers == 0)
    assert (await stored(storage, job.id)).state == "DELIVERED"


async def test_too_large_video_sends_link_instead(
    make_service: Callable[..., VideoService], media: FakeMedia, notifier: FakeNotifier
) -> None:
    media.script = [done()]
    service = make_service(download_limit=len(VIDEO) - 1)
    await submit(service)
    await eventually(lambda: bool(notifier.completed_calls))
    assert notifier.completed_calls[0][1] is None
    assert media.downloads[0][1] == len(VIDEO) - 1


async def test_completed_without_url_is_an_error(
    make_service: Callable[..., VideoService], media: FakeMedia, notifier: FakeNotifier
) -> None:
    media.script = [Status(State.COMPLETED, url=None)]
    service = make_service()
    await submit(service)
    await eventually(lambda: bool(notifier.failed_calls))
    assert notifier.failed_calls[0].state == "ERROR"
    assert notifier.completed_calls == []


# ----------------------------------------------------------------------- notifier errors


async def test_notifier_progress_errors_do_not_kill_the_poller(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    notifier.progress_error = RuntimeError("message to edit not found")
    service = make_service()
    job = await submit(service)
    await eventually(lambda: bool(notifier.completed_calls))
    assert len(notifier.progress_calls) == 2
    await eventually(lambda: service.active_pollers == 0)
    assert (await stored(storage, job.id)).state == "DELIVERED"


async def test_failed_delivery_is_retried_with_the_link(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [done()]
    notifier.completed_failures = 1
    service = make_service()
    job = await submit(service)
    await eventually(lambda: len(notifier.completed_calls) == 2)
    assert [video for _, video in notifier.completed_calls] == [VIDEO, None]
    await eventually(lambda: service.active_pollers == 0)
    assert (await stored(storage, job.id)).state == "DELIVERED"
    assert len(media.downloads) == 1  # downloaded once, not per attempt


async def test_delivery_gives_up_after_repeated_notifier_errors(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [done()]
    notifier.completed_failures = 100
    notifier.failed_error = RuntimeError("telegram is down")
    service = make_service()
    job = await submit(service)
    await eventually(lambda: service.active_pollers == 0)
    assert len(notifier.completed_calls) == 3
    assert [j.state for j in notifier.failed_calls] == ["ERROR"]
    assert (await stored(storage, job.id)).state == "ERROR"


# ------------------------------------------------------------------------------- restart


async def test_restart_resumes_polling_and_delivers(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    media.script = [QUEUED, RUNNING, RUNNING, RUNNING, done()]
    first = make_service()
    job = await submit(first)
    await eventually(lambda: media.polls.get("vid-1", 0) >= 2)
    await first.close()
    assert first.active_pollers == 0
    polls_before = media.polls["vid-1"]
    await asyncio.sleep(POLL * 3)
    assert media.polls["vid-1"] == polls_before  # really stopped
    (active,) = await storage.active_video_jobs()
    assert active.id == job.id and active.state in ("IN_QUEUE", "IN_PROGRESS")
    assert notifier.completed_calls == []

    second = make_service()  # a new process on the same database
    await second.start()
    await eventually(lambda: bool(notifier.completed_calls))
    assert notifier.completed_calls[0][0].id == job.id
    assert media.polls["vid-1"] > polls_before  # same request id, polling continued
    assert len(media.started) == 1  # never resubmitted
    await eventually(lambda: second.active_pollers == 0)
    assert (await stored(storage, job.id)).state == "DELIVERED"


async def test_restart_delivers_completed_but_undelivered_job(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    job = await storage.create_video_job(
        user_id=1,
        chat_id=1,
        thread_id=None,
        model="m",
        prompt="p",
        lang="en",
        progress_message_id=3,
    )
    await storage.update_video_job(
        job.id, request_id="vid-9", state="COMPLETED", url="https://cdn.example/x.mp4"
    )
    service = make_service()
    await service.start()
    await eventually(lambda: bool(notifier.completed_calls))
    assert notifier.completed_calls[0][1] == VIDEO
    assert media.polls == {}  # the result was known already
    await eventually(lambda: service.active_pollers == 0)
    assert (await stored(storage, job.id)).state == "DELIVERED"


async def test_restart_reports_job_interrupted_while_submitting(
    make_service: Callable[..., VideoService],
    storage: SQLiteStorage,
    media: FakeMedia,
    notifier: FakeNotifier,
) -> None:
    job = await storage.create_video_job(
        user_id=1,
        chat_id=1,
        thread_id=None,
        model="m",
        prompt="p",
        lang="en",
        progress_message_id=None,
    )
    service = make_service()
    await service.start()
    (failed,) = notifier.failed_calls
    assert (failed.id, failed.state) == (job.id, "ERROR")
    assert media.started == []  # not resubmitted: it might have been paid already
    assert service.active_pollers == 0
    assert await storage.active_video_jobs() == []


async def test_start_twice_does_not_duplicate_pollers(
    make_service: Callable[..., VideoService], media: FakeMedia
) -> None:
    media.script = [RUNNING]
    service = make_service()
    await submit(service)
    await service.start()
    await service.start()
    assert service.active_pollers == 1


# --------------------------------------------------------------------------------- limits


async def test_per_user_limit(
    make_service: Callable[..., VideoService], storage: SQLiteStorage, media: FakeMedia
) -> None:
    media.script = [RUNNING]
    service = make_service(max_jobs_per_user=2)
    await submit(service)
    await submit(service)
    with pytest.raises(TooManyVideoJobs) as info:
        await submit(service)
    assert info.value.limit == 2
    assert len(media.started) == 2  # the refused one never reached the upstream
    assert await storage.count_active_video_jobs(1) == 2
    await submit(service, user_id=2)  # other users are not affected
    assert service.active_pollers == 3


async def test_per_user_limit_holds_under_concurrent_submits(
    make_service: Callable[..., VideoService], storage: SQLiteStorage, media: FakeMedia
) -> None:
    media.script = [RUNNING]
    service = make_service(max_jobs_per_user=2)
    results = await asyncio.gather(*(submit(service) for _ in range(6)), return_exceptions=True)
    assert sum(isinstance(r, VideoJob) for r in results) == 2
    assert sum(isinstance(r, TooManyVideoJobs) for r in results) == 4
    assert await storage.count_active_video_jobs(1) == 2


async def test_finished_jobs_free_the_slot(
    make_service: Callable[..., VideoService], media: FakeMedia, notifier: FakeNotifier
) -> None:
    service = make_service(max_jobs_per_user=1)
    await submit(service)
    await eventually(lambda: service.active_pollers == 0)
    await submit(service)  # the first one was delivered
    await eventually(lambda: len(notifier.completed_calls) == 2)


# ------------------------------------------------------------------------------ lifecycle


async def test_notifier_is_required(storage: SQLiteStorage, media: FakeMedia) -> None:
    service = VideoService(storage, OneVideoMaker(media), default_model="m", poll_seconds=POLL)
    with pytest.raises(RuntimeError, match="set_notifier"):
        await submit(service)
    with pytest.raises(RuntimeError, match="set_notifier"):
        await service.start()
    assert media.started == []


async def test_close_cancels_every_poller_and_refuses_new_jobs(
    make_service: Callable[..., VideoService], storage: SQLiteStorage, media: FakeMedia
) -> None:
    media.script = [RUNNING]
    service = make_service(max_jobs_per_user=5)
    for user in range(1, 4):
        await submit(service, user_id=user)
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("video-job-")]
    assert len(tasks) == 3
    await service.close()
    assert all(t.done() for t in tasks)
    assert service.active_pollers == 0
    assert len(await storage.active_video_jobs()) == 3  # kept for the next start
    with pytest.raises(RuntimeError, match="closed"):
        await submit(service)
    await service.close()  # idempotent


async def test_invalid_options_are_rejected(storage: SQLiteStorage, media: FakeMedia) -> None:
    with pytest.raises(ValueError):
        VideoService(storage, OneVideoMaker(media), default_model="m", poll_seconds=0)
    with pytest.raises(ValueError):
        VideoService(storage, OneVideoMaker(media), default_model="m", max_jobs_per_user=0)


# ------------------------------------------------------------- with the real media client


async def test_real_media_client_against_fake_upstream_with_restart(
    storage: SQLiteStorage, notifier: FakeNotifier, clock: FakeClock
) -> None:
    # The real client is another engineer's module: skip (not fail) while it is absent.
    media_module = pytest.importorskip("services.llm.media")
    import httpx

    from services.llm import CircuitBreaker, FairRateLimiter
    from tests.fakes.upstream_server import FakeUpstream

    async with FakeUpstream() as upstream, httpx.AsyncClient() as http:
        upstream.video_steps = ["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
        client = media_module.MediaClient(
            http,
            upstream.url,
            upstream.api_key,
            limiter=FairRateLimiter(0),
            breaker=CircuitBreaker(),
        )

        def service() -> VideoService:
            made = VideoService(
                storage,
                OneVideoMaker(client),
                default_model="txt2vid-kling/standart",
                poll_seconds=POLL,
                clock=clock,  # the storage's clock stamps created_at
            )
            made.set_notifier(notifier)
            return made

        first = service()
        job = await submit(first, prompt="a red fox")
        assert upstream.video_jobs[job.request_id or ""]["prompt"] == "a red fox"
        await eventually(lambda: upstream.video_polls.get(job.request_id or "", 0) >= 1)
        await first.close()

        second = service()
        await second.start()
        await eventually(lambda: bool(notifier.completed_calls), within=10)
        await second.close()

    delivered, video = notifier.completed_calls[0]
    assert delivered.id == job.id and delivered.url
    assert video is not None and video[4:8] == b"ftyp"  # a real MP4 from the fake upstream
    assert (await stored(storage, job.id)).state == "DELIVERED"
    assert len(upstream.video_jobs) == 1  # resumed, never resubmitted
