from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.storage import (
    ACTIVE_VIDEO_JOB_STATES,
    VIDEO_JOB_STATES,
    ActiveJobsLimit,
    SQLiteStorage,
    Storage,
    VideoJob,
)
from services.storage import rows as rows_module
from services.storage import sqlite as sqlite_module
from tests.fakes.clock import FakeClock
from tests.unit.storage_backends import BACKENDS, backend_storage, fetch, sqlite_only


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Storage]:
    async with backend_storage(request.param, clock) as store:
        yield store


async def new_job(store: SQLiteStorage, user_id: int = 1, **kw: object) -> VideoJob:
    args: dict[str, object] = {
        "user_id": user_id,
        "chat_id": 100 + user_id,
        "thread_id": None,
        "model": "txt2vid-kling/standart",
        "prompt": "a cat on a skateboard",
        "lang": "en",
        "progress_message_id": 55,
    }
    args.update(kw)
    return await store.create_video_job(**args)  # type: ignore[arg-type]


async def test_create_stores_a_submitting_job(storage: SQLiteStorage, clock: FakeClock) -> None:
    job = await new_job(storage, thread_id=7)
    assert job == VideoJob(
        id=job.id,
        user_id=1,
        chat_id=101,
        thread_id=7,
        request_id=None,
        model="txt2vid-kling/standart",
        prompt="a cat on a skateboard",
        lang="en",
        state="submitting",
        progress_message_id=55,
        url=None,
        reason=None,
        created_at=clock.now,
        updated_at=clock.now,
    )
    assert isinstance(job.created_at, float) and isinstance(job.updated_at, float)
    other = await new_job(storage, progress_message_id=None)
    assert other.id > job.id
    assert other.thread_id is None and other.progress_message_id is None


async def test_update_changes_fields_and_updated_at(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    job = await new_job(storage)
    clock.now += 30
    updated = await storage.update_video_job(job.id, request_id="vid-1", state="IN_QUEUE")
    assert (updated.request_id, updated.state) == ("vid-1", "IN_QUEUE")
    assert updated.created_at == job.created_at
    assert updated.updated_at == clock.now
    clock.now += 30
    done = await storage.update_video_job(
        job.id, state="COMPLETED", url="https://x/v.mp4", progress_message_id=77
    )
    assert (done.state, done.url, done.progress_message_id) == (
        "COMPLETED",
        "https://x/v.mp4",
        77,
    )
    assert done.request_id == "vid-1"  # untouched fields kept
    failed = await storage.update_video_job(job.id, state="FAILED", reason="nsfw", url=None)
    assert (failed.reason, failed.url) == ("nsfw", None)
    assert await storage.update_video_job(job.id) == failed  # no fields: just read


async def test_update_validates(storage: SQLiteStorage) -> None:
    job = await new_job(storage)
    with pytest.raises(ValueError, match="prompt"):
        await storage.update_video_job(job.id, prompt="changed")
    with pytest.raises(ValueError, match="state"):
        await storage.update_video_job(job.id, state="DONE")
    with pytest.raises(ValueError, match="state"):
        await storage.update_video_job(job.id, state=None)
    with pytest.raises(TypeError):
        await storage.update_video_job(job.id, progress_message_id="12")
    with pytest.raises(TypeError):
        await storage.update_video_job(job.id, progress_message_id=True)
    with pytest.raises(TypeError):
        await storage.update_video_job(job.id, url=5)
    with pytest.raises(LookupError):
        await storage.update_video_job(job.id + 100, state="ERROR")
    with pytest.raises(LookupError):
        await storage.update_video_job(job.id + 100)
    assert (await storage.update_video_job(job.id)).state == "submitting"


async def test_every_documented_state_is_storable(storage: SQLiteStorage) -> None:
    job = await new_job(storage)
    for state in sorted(VIDEO_JOB_STATES):
        assert (await storage.update_video_job(job.id, state=state)).state == state


async def test_a_limited_create_counts_and_stores_as_one_step(storage: SQLiteStorage) -> None:
    # Ten submissions at once for one user with room for two: exactly two are stored, as
    # two replicas submitting in the same instant must not pass the limit (PostgreSQL: ten
    # pool connections at once).
    results = await asyncio.gather(
        *(new_job(storage, user_id=5, max_active=2) for _ in range(10)), return_exceptions=True
    )
    stored = [r for r in results if isinstance(r, VideoJob)]
    refused = [r for r in results if isinstance(r, ActiveJobsLimit)]
    assert (len(stored), len(refused)) == (2, 8)
    assert await storage.count_active_video_jobs(5) == 2
    # A finished job frees its place; other users have their own.
    await storage.update_video_job(stored[0].id, state="DELIVERED")
    assert (await new_job(storage, user_id=5, max_active=2)).state == "submitting"
    with pytest.raises(ActiveJobsLimit):
        await new_job(storage, user_id=5, max_active=2)
    assert (await new_job(storage, user_id=6, max_active=1)).user_id == 6


async def test_active_jobs_and_per_user_count(storage: SQLiteStorage) -> None:
    states = ["submitting", "IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    states += ["FAILED", "TIMEOUT", "ERROR", "DELIVERED"]
    ids = {}
    for state in states:
        job = await new_job(storage, user_id=1)
        await storage.update_video_job(job.id, state=state)
        ids[state] = job.id
    other = await new_job(storage, user_id=2)

    active = await storage.active_video_jobs()
    assert [j.id for j in active] == [ids[s] for s in states[:4]] + [other.id]  # oldest first
    assert {j.state for j in active} <= ACTIVE_VIDEO_JOB_STATES
    assert await storage.count_active_video_jobs(1) == 4
    assert await storage.count_active_video_jobs(2) == 1
    assert await storage.count_active_video_jobs(3) == 0

    await storage.update_video_job(ids["COMPLETED"], state="DELIVERED")
    assert await storage.count_active_video_jobs(1) == 3
    assert ids["COMPLETED"] not in {j.id for j in await storage.active_video_jobs()}


async def test_concurrent_updates_of_different_jobs(storage: SQLiteStorage) -> None:
    jobs = [await new_job(storage, user_id=u) for u in range(1, 21)]

    async def walk(job: VideoJob) -> None:
        for state in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED", "DELIVERED"):
            await storage.update_video_job(job.id, state=state, request_id=f"r{job.id}")

    await asyncio.gather(*(walk(j) for j in jobs))
    assert await storage.active_video_jobs() == []
    rows = await fetch(storage, "SELECT DISTINCT state FROM video_jobs")
    assert rows == [("DELIVERED",)]


def test_active_state_sql_matches_the_constant() -> None:
    listed = rows_module.ACTIVE_VIDEO_STATES_SQL.split("IN", 1)[1]
    names = {part.strip(" ()'") for part in listed.split(",")}
    assert names == ACTIVE_VIDEO_JOB_STATES


@pytest.mark.parametrize(
    ("sql", "step"),
    [
        (
            sqlite_module._SQL_COUNT_ACTIVE_VIDEO_JOBS,
            "SEARCH video_jobs USING INDEX video_jobs_active_user_idx (user_id=?)",
        ),
        (sqlite_module._SQL_ACTIVE_VIDEO_JOBS, "SCAN video_jobs USING INDEX video_jobs_active_idx"),
        (sqlite_module._SQL_GET_VIDEO_JOB, "SEARCH video_jobs USING INTEGER PRIMARY KEY (rowid=?)"),
    ],
)
@sqlite_only
async def test_video_queries_use_the_partial_indexes(
    storage: SQLiteStorage, sql: str, step: str
) -> None:
    # The partial indexes hold active jobs only, so neither query reads the finished history.
    params = (1,) * sql.count("?")
    rows = await fetch(storage, "EXPLAIN QUERY PLAN " + sql, params)
    assert [str(row[-1]) for row in rows] == [step]


async def test_a_job_knows_what_it_makes(storage: SQLiteStorage) -> None:
    video = await new_job(storage)
    picture = await new_job(storage, user_id=2, model="mashagpt:flux-pro", kind="image")
    assert video.kind == "video" and picture.kind == "image"
    assert [job.kind for job in await storage.active_video_jobs()] == ["video", "image"]
    updated = await storage.update_video_job(picture.id, state="IN_PROGRESS")
    assert updated.kind == "image"
