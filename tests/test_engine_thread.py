"""The engine thread's typed events, on a real `EngineThread` with plain-Python jobs (no model:
what is checked is the order and type of what a job reports back to the event loop)."""

from __future__ import annotations

import asyncio
import threading

from engine.engine_thread import (
    EngineThread,
    Job,
    JobCancelled,
    JobDone,
    JobEvent,
    JobFailed,
    QueuePosition,
    TextDelta,
)

WAIT_S = 10.0


async def events_until_end(job: Job) -> list[JobEvent]:
    """Every event of the job up to and including its last (done, failed or cancelled)."""
    seen: list[JobEvent] = []
    while not seen or not isinstance(seen[-1], (JobDone, JobFailed, JobCancelled)):
        seen.append(await asyncio.wait_for(job.events.get(), WAIT_S))
    return seen


async def test_a_job_reports_its_position_its_text_then_its_result() -> None:
    worker = EngineThread()
    try:
        def run(job: Job) -> str:
            job.post(TextDelta("hel"))
            job.post(TextDelta("lo"))
            return "hello"

        job = Job(run)
        assert worker.submit(job) == 0
        assert await events_until_end(job) == [
            QueuePosition(0), TextDelta("hel"), TextDelta("lo"), JobDone("hello")
        ]
    finally:
        worker.close()


async def test_a_failing_job_reports_what_it_raised() -> None:
    worker = EngineThread()
    error = ValueError("no such model")
    try:
        def run(_: Job) -> None:
            raise error

        job = Job(run)
        worker.submit(job)
        assert await events_until_end(job) == [QueuePosition(0), JobFailed(error)]
    finally:
        worker.close()


async def test_jobs_run_in_order_and_a_job_cancelled_while_waiting_never_runs() -> None:
    worker = EngineThread()
    release, ran = threading.Event(), threading.Event()
    try:
        first = Job(lambda _: release.wait(WAIT_S))
        second = Job(lambda _: "second")
        third = Job(lambda _: ran.set())
        worker.submit(first)
        assert await asyncio.wait_for(first.events.get(), WAIT_S) == QueuePosition(0)
        assert worker.submit(second) == 1
        assert worker.submit(third) == 2
        third.cancel("superseded")
        release.set()
        assert await events_until_end(first) == [JobDone(True)]
        assert await events_until_end(second) == [QueuePosition(0), JobDone("second")]
        assert await events_until_end(third) == [JobCancelled("superseded")]
        done = asyncio.Event()
        worker.submit(Job(lambda _: None, on_end=done.set))
        await asyncio.wait_for(done.wait(), WAIT_S)  # the queue has moved past `third`
        assert not ran.is_set()
    finally:
        worker.close()
