"""Video generation jobs: submit, poll the upstream in the background, deliver, survive restarts.

Generating a video takes minutes and costs money, so a job is written to storage BEFORE the
upstream is asked (a crash then leaves a visible row rather than a paid, forgotten generation)
and every state change is persisted, so a restarted bot resumes polling and still delivers.

One poller task per active job (the per-user limit bounds them). A poller never dies from a
flaky upstream, a notifier bug or a storage hiccup: those are logged and retried on the next
tick; only the job's own end (delivered, failed, timed out) or ``close()`` stops it.

Each job has one owner (services/replicas.py): the replica that submitted it polls it; when
that replica dies (or stops cleanly and releases it), another claims it and polls and delivers
it. Before each tick and again right before delivering, a replica sharing the database checks
that it still owns the job, so a replica that stalled past the timeout and lost its job to
another does not deliver it too.

Delivery is at-least-once: if the process dies between ``notifier.completed`` and marking the
job DELIVERED, the replica that takes the job over (or the next start) delivers it again (a
duplicate beats a lost paid video). DELIVERED is stored before the job can be claimed by anyone
else: a job is only claimed from a dead owner, and a live owner stores DELIVERED first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from services.images import to_data_url
from services.llm.errors import RateLimited, ServiceUnavailable, UpstreamError
from services.llm.retry import should_retry
from services.replicas import Replicas
from services.storage import (
    ACTIVE_VIDEO_JOB_STATES,
    ActiveJobsLimit,
    Storage,
    UsageRecord,
    VideoJob,
)

__all__ = [
    "IMAGE",
    "VIDEO",
    "TooManyVideoJobs",
    "VideoMediaClient",
    "VideoNotifier",
    "VideoService",
    "VideoStatusLike",
]

log = logging.getLogger(__name__)

# What a job makes (VideoJob.kind): the same machinery serves pictures from task APIs.
VIDEO = "video"
IMAGE = "image"
# A picture is sent as a photo: Telegram takes photos of up to 10 MB.
IMAGE_DOWNLOAD_LIMIT = 10 * 1024 * 1024
IMAGE_POLL_SECONDS = 2.0

# Consecutive non-transient upstream errors (4xx: unknown request id, auth) on status polls
# before the job is given up as ERROR; one could be a hiccup, several mean it will not recover.
_MAX_PERMANENT_POLL_ERRORS = 3
# Attempts to hand a finished video to the notifier (Telegram may refuse an upload once).
_MAX_DELIVERY_ATTEMPTS = 3
# Consecutive failures of a whole tick (storage down, a bug) before the poller stops;
# the job stays active in storage and the next start() picks it up again.
_MAX_TICK_FAILURES = 20
_TABLE = "video_jobs"


class _TakenOver(Exception):
    """Another replica owns the job now (this one was thought dead): stop polling it."""


class VideoStatusLike(Protocol):
    """What ``video_status`` returns (services.llm.media.VideoStatus satisfies it)."""

    @property
    def state(self) -> str: ...  # "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED" | "FAILED" (a StrEnum)

    @property
    def url(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...


class VideoMediaClient(Protocol):
    """The part of services.llm.media.MediaClient this service uses.

    Typed structurally so this module neither imports nor depends on the media client's module.
    Errors are ``UpstreamError`` subclasses.
    """

    async def start_video(
        self,
        prompt: str,
        *,
        model: str,
        aspect_ratio: str | None = None,
        image_url: str | None = None,
        user_key: Hashable = None,
    ) -> str: ...

    async def video_status(self, request_id: str) -> VideoStatusLike: ...

    async def download(self, url: str, *, max_bytes: int) -> bytes: ...


class VideoMakers(Protocol):
    """Which client makes (and polls) videos of a model, and the model's id there."""

    def video_for(self, model: str) -> tuple[VideoMediaClient, str]: ...


class OneVideoMaker:
    """Every model made by one client under its own id (a single-provider setup, tests)."""

    def __init__(self, media: VideoMediaClient) -> None:
        self._media = media

    def video_for(self, model: str) -> tuple[VideoMediaClient, str]:
        return self._media, model


class VideoNotifier(Protocol):
    """Implemented on the Telegram side. Exceptions are logged; they never stop a poller."""

    async def progress(self, job: VideoJob, elapsed: float) -> None: ...

    async def completed(self, job: VideoJob, video: bytes | None) -> None:
        """``video`` is the file when it was downloaded, else None: send ``job.url`` instead."""
        ...

    async def failed(self, job: VideoJob) -> None:
        """``job.state`` is FAILED, TIMEOUT or ERROR; ``job.reason`` says why (may be None)."""
        ...


class TooManyVideoJobs(Exception):
    """The user already has ``limit`` active video jobs."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} active video jobs per user")
        self.limit = limit


@dataclass(slots=True)
class _PollContext:
    """Per-poller counters; lives only as long as its task."""

    permanent_errors: int = 0
    delivery_attempts: int = 0
    video: bytes | None = None
    downloaded: bool = False


def _state_name(state: object) -> str:
    value = str(getattr(state, "value", state))
    # Anything unexpected means "still running": only explicit verdicts end a job.
    return value if value in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED") else "IN_PROGRESS"


def _is_transient(exc: UpstreamError) -> bool:
    return isinstance(exc, ServiceUnavailable | RateLimited) or should_retry(exc.status)


class VideoService:
    def __init__(
        self,
        storage: Storage,
        makers: VideoMakers,
        *,
        default_model: str,
        poll_seconds: float = 10.0,
        timeout_minutes: float = 20.0,
        max_jobs_per_user: int = 2,
        download_limit: int = 50 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        replicas: Replicas | None = None,
    ) -> None:
        if poll_seconds <= 0 or timeout_minutes <= 0 or max_jobs_per_user < 1:
            raise ValueError("poll_seconds, timeout_minutes and max_jobs_per_user must be positive")
        self._storage = storage
        self._makers = makers
        self._default_model = default_model
        self._poll_seconds = float(poll_seconds)
        self._timeout = float(timeout_minutes) * 60.0
        self._max_jobs = int(max_jobs_per_user)
        self._download_limit = int(download_limit)
        self._clock = clock
        # Who owns the jobs this process polls; alone on the database without a registry.
        self._replicas = replicas if replicas is not None else Replicas(storage)
        self._notifier: VideoNotifier | None = None
        self._pollers: dict[int, asyncio.Task[None]] = {}
        self._submitting: set[int] = set()
        # Makes "count active jobs, then create one" atomic against the same user's concurrent
        # submits in this process (with replicas, two submits of one user arriving on two
        # replicas in the same instant may pass the limit by one).
        self._closed = False
        # Told (kind, state) when a job is submitted, delivered or fails: the bot's metrics.
        self._state_listeners: list[Callable[[str, str], None]] = []

    def add_state_listener(self, listener: Callable[[str, str], None]) -> None:
        self._state_listeners.append(listener)

    def _announce(self, job: VideoJob) -> None:
        for listener in self._state_listeners:
            listener(job.kind, job.state)

    def set_notifier(self, notifier: VideoNotifier) -> None:
        self._notifier = notifier

    @property
    def default_model(self) -> str:
        return self._default_model

    @property
    def active_pollers(self) -> int:
        """Running poller tasks (one per job being polled or delivered)."""
        return len(self._pollers)

    def _require_notifier(self) -> VideoNotifier:
        if self._notifier is None:
            raise RuntimeError("VideoService.set_notifier() must be called before use")
        return self._notifier

    # ------------------------------------------------------------------------------ public

    async def submit(
        self,
        *,
        user_id: int,
        chat_id: int,
        thread_id: int | None,
        prompt: str,
        lang: str,
        model: str | None = None,
        image: bytes | None = None,
        progress_message_id: int | None,
        aspect_ratio: str | None = None,
        kind: str = VIDEO,
    ) -> VideoJob:
        """Store and submit a job, then poll it in the background.

        Raises TooManyVideoJobs before anything is stored or sent. An UpstreamError from the
        submission marks the job ERROR, notifies ``failed`` and is re-raised for the handler.
        """
        self._require_notifier()
        if self._closed:
            raise RuntimeError("VideoService is closed")
        chosen = model or self._default_model
        try:
            # Counted and stored in one step, also against other replicas' submissions.
            job = await self._storage.create_video_job(
                user_id=user_id,
                chat_id=chat_id,
                thread_id=thread_id,
                model=chosen,
                prompt=prompt,
                lang=lang,
                progress_message_id=progress_message_id,
                kind=kind,
                owner=self._replicas.id,
                max_active=self._max_jobs,
            )
        except ActiveJobsLimit:
            raise TooManyVideoJobs(self._max_jobs) from None
        self._submitting.add(job.id)
        try:
            try:
                media, own_model = self._makers.video_for(chosen)
                request_id = await media.start_video(
                    prompt,
                    model=own_model,
                    aspect_ratio=aspect_ratio,
                    image_url=to_data_url(image) if image is not None else None,
                    user_key=user_id,
                )
            except UpstreamError as exc:
                log.warning("video job %d: submission refused: %r", job.id, exc)
                await self._finish(job, "ERROR", str(exc))
                raise
            except (Exception, asyncio.CancelledError) as exc:
                # Not the upstream's verdict (a bug, the handler cancelled): record it so the
                # job does not hold a slot of the user's limit until the next restart. The
                # handler reports these itself, so no failed() notification.
                await self._storage.update_video_job(
                    job.id, state="ERROR", reason=f"submission aborted: {type(exc).__name__}"
                )
                raise
            job = await self._storage.update_video_job(
                job.id, request_id=request_id, state="IN_QUEUE"
            )
            self._announce(job)
            await self._record_usage(job)
        finally:
            self._submitting.discard(job.id)
        log.info("video job %d: submitted as %s (model %s)", job.id, request_id, chosen)
        # Just submitted: the first answer is a tick away at the earliest.
        self._spawn(job, first_delay=self._poll_interval(job))
        return job

    async def start(self) -> None:
        """Resume every active job whose owner is gone (the bot restarted mid-generation)."""
        self._require_notifier()
        self._closed = False
        await self.take_over()

    async def take_over(self) -> None:
        """Claim and resume the active jobs of dead replicas (or of nobody); the replicas'
        scan calls this every few seconds."""
        if self._closed:
            return
        me = self._replicas.id
        for job_id, previous in await self._storage.orphans(
            _TABLE, me, self._replicas.alive_since()
        ):
            if job_id in self._pollers or job_id in self._submitting:
                continue
            if not await self._storage.claim(_TABLE, job_id, me, previous):
                continue  # another replica claimed it first
            job = await self._storage.update_video_job(job_id)
            if job.state not in ACTIVE_VIDEO_JOB_STATES:
                continue
            if job.request_id is None and job.state != "COMPLETED":
                # Interrupted while submitting: the upstream may or may not have accepted it,
                # and resubmitting could pay twice, so report it instead.
                log.warning("video job %d: found unsubmitted after a restart", job.id)
                await self._finish(job, "ERROR", "interrupted while submitting")
                continue
            log.info("video job %d: resuming (%s)", job.id, job.state)
            self._spawn(job, first_delay=0.0)

    async def close(self) -> None:
        """Stop every poller; their jobs stay active in storage for the next ``start()``."""
        self._closed = True
        tasks = list(self._pollers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pollers.clear()

    # ----------------------------------------------------------------------------- pollers

    async def _record_usage(self, job: VideoJob) -> None:
        """An accepted job is a paid request: it shows in /usage and /stats and counts against
        the user's daily quota (recorded once, at submission, whatever comes of the job)."""
        record = UsageRecord(job.user_id, job.chat_id, job.model, 0, 0, None, "ok")
        try:
            await self._storage.record_usage(record)
        except Exception:
            log.exception("video job %d: could not record its usage", job.id)

    def _poll_interval(self, job: VideoJob) -> float:
        # A picture is drawn in seconds (task APIs are polled every 2-3 s by their clients);
        # a video takes minutes.
        if job.kind == IMAGE:
            return min(self._poll_seconds, IMAGE_POLL_SECONDS)
        return self._poll_seconds

    def _spawn(self, job: VideoJob, *, first_delay: float) -> None:
        if self._closed:
            return  # stays active in storage; the next start() resumes it
        task = asyncio.create_task(self._run(job, first_delay), name=f"video-job-{job.id}")
        self._pollers[job.id] = task
        task.add_done_callback(functools.partial(self._forget, job.id))

    def _forget(self, job_id: int, task: asyncio.Task[None]) -> None:
        if self._pollers.get(job_id) is task:
            del self._pollers[job_id]

    async def _still_owned(self, job: VideoJob) -> None:
        # One process per database: nobody else can have it.
        if self._replicas.shared and not await self._storage.owns(
            _TABLE, job.id, self._replicas.id
        ):
            raise _TakenOver

    async def _run(self, job: VideoJob, first_delay: float) -> None:
        ctx = _PollContext()
        failures = 0
        await asyncio.sleep(first_delay)
        while True:
            try:
                await self._still_owned(job)
                job = await self._tick(job, ctx)
                failures = 0
            except asyncio.CancelledError:
                raise
            except _TakenOver:
                log.warning("video job %d: taken over by another replica; stopped here", job.id)
                return
            except Exception:
                failures += 1
                log.exception("video job %d: poll tick failed (%d in a row)", job.id, failures)
                if failures >= _MAX_TICK_FAILURES:
                    log.error("video job %d: poller stopped; resumes on next start", job.id)
                    return
            if job.state not in ACTIVE_VIDEO_JOB_STATES:
                return
            await asyncio.sleep(self._poll_interval(job))

    async def _tick(self, job: VideoJob, ctx: _PollContext) -> VideoJob:
        if job.state == "COMPLETED":
            return await self._deliver(job, ctx)
        if job.request_id is None:  # start() and submit() never spawn one; be safe anyway
            return await self._finish(job, "ERROR", "no upstream request id")
        status: VideoStatusLike | None = None
        try:
            status = await self._makers.video_for(job.model)[0].video_status(job.request_id)
            ctx.permanent_errors = 0
        except UpstreamError as exc:
            if _is_transient(exc):
                log.warning("video job %d: status poll failed, retrying: %r", job.id, exc)
            else:
                ctx.permanent_errors += 1
                log.warning("video job %d: status poll refused: %r", job.id, exc)
                if ctx.permanent_errors >= _MAX_PERMANENT_POLL_ERRORS:
                    return await self._finish(job, "ERROR", str(exc))
        except Exception:
            # Not classified by the client (unexpected payload, a bug): keep polling; the
            # timeout below still bounds the job.
            log.exception("video job %d: status poll failed unexpectedly", job.id)
        if status is not None:
            state = _state_name(status.state)
            if state == "COMPLETED":
                # Persist the URL before downloading so a restart can still deliver.
                job = await self._storage.update_video_job(
                    job.id, state="COMPLETED", url=status.url
                )
                log.info("video job %d: completed", job.id)
                return await self._deliver(job, ctx)
            if state == "FAILED":
                return await self._finish(job, "FAILED", status.reason)
            if state != job.state:
                job = await self._storage.update_video_job(job.id, state=state)
        # Checked only after the poll: a video that finished while the bot was down for longer
        # than the timeout is still delivered rather than reported as timed out.
        elapsed = self._clock() - job.created_at
        if elapsed >= self._timeout:
            log.warning("video job %d: timed out after %.0f s", job.id, elapsed)
            return await self._finish(job, "TIMEOUT", None)
        try:
            await self._require_notifier().progress(job, elapsed)
        except Exception:
            log.exception("video job %d: notifier.progress failed", job.id)
        return job

    async def _deliver(self, job: VideoJob, ctx: _PollContext) -> VideoJob:
        if not job.url:
            return await self._finish(job, "ERROR", "completed without a video URL")
        if not ctx.downloaded:
            ctx.downloaded = True
            try:
                media = self._makers.video_for(job.model)[0]
                limit = IMAGE_DOWNLOAD_LIMIT if job.kind == IMAGE else self._download_limit
                ctx.video = await media.download(job.url, max_bytes=limit)
            except Exception as exc:
                # Too large or unreachable from here: Telegram can still be given the link.
                log.warning("video job %d: download failed, sending the link: %r", job.id, exc)
        await self._still_owned(job)  # the download may have taken a while
        ctx.delivery_attempts += 1
        # A retry sends the link: if the upload itself was refused, the same bytes would be too.
        video = ctx.video if ctx.delivery_attempts == 1 else None
        try:
            await self._require_notifier().completed(job, video)
        except Exception:
            log.exception(
                "video job %d: notifier.completed failed (attempt %d)",
                job.id,
                ctx.delivery_attempts,
            )
            if ctx.delivery_attempts < _MAX_DELIVERY_ATTEMPTS:
                return job  # still COMPLETED: retried next tick
            return await self._finish(job, "ERROR", "delivery failed")
        ctx.video = None  # do not hold megabytes longer than needed
        job = await self._storage.update_video_job(job.id, state="DELIVERED")
        self._announce(job)
        log.info("video job %d: delivered", job.id)
        return job

    async def _finish(self, job: VideoJob, state: str, reason: str | None) -> VideoJob:
        """Store a terminal failure state and tell the user; notifier errors are only logged."""
        job = await self._storage.update_video_job(job.id, state=state, reason=reason)
        self._announce(job)
        try:
            await self._require_notifier().failed(job)
        except Exception:
            log.exception("video job %d: notifier.failed failed", job.id)
        return job
