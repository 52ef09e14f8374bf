"""One session and one commit per request, sized so that concurrent requests cannot stall the pool.

The deadlock this avoids: a sync dependency queries (its connection stays
checked out until the request's transaction ends), then the request waits for a
worker thread to run the endpoint; meanwhile every worker thread belongs to
another request that waits for a connection. Neither side can move until
``pool_timeout`` fails them all.

The rule that prevents it: no request may hold a connection while waiting for
one. So at most as many requests as the pool has connections are *admitted* at
once (an async limiter: a waiting request holds no thread and no connection),
the session is created on the event loop without connecting (it connects
lazily, inside a worker thread, on its first query), and the commit runs on a
thread of its own rather than queueing behind requests that wait for a worker.
Admitted requests therefore always find a free connection, and the worker
threads never block on the pool.

Sizing: admission = pool_size + max_overflow, read from each database's pool. An admitted request runs at most one
worker thread at a time, so the anyio thread limiter is raised to the admissions of every database together plus a
few spares (``size_worker_threads``) and admitted requests never queue for threads.
Capping threads at the pool size alone would not do: a request keeps its
connection between its thread hops (dependency, endpoint, commit), holding no
thread while it waits for the next one. FastAPI's ``Depends(max_concurrency=)``
would do the admission too, but its limit is fixed at import, before settings
and the engine exist.

``run(work)`` takes one hop instead of three: the request's work and its commit in one trip to a worker thread,
each trip costing about 0.2 ms of CPU under load (docs/performance.md). The API's routes on core use it.
"""

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool
from sqlmodel import Session

from src.core.engines import READS_ONLY, get_engine
from src.core.errors import AppError
from src.core.metrics import waiting_for, watch_pool

T = TypeVar("T")

# Worker threads left over for requests that need no database (/health) when every admitted request runs one.
SPARE_WORKER_THREADS = 8


def pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool hands out at most; None when unbounded."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return None
    # QueuePool has no public accessor for max_overflow; -1 means no limit.
    max_overflow: int = pool._max_overflow
    return None if max_overflow < 0 else pool.size() + max_overflow


class RequestSessions:
    """Hands each request one session, admitting no more requests than ``capacity`` at once."""

    def __init__(
        self, session_factory: Callable[[bool], Session], *, capacity: int | None, database: str = "core"
    ) -> None:
        """``session_factory(reads_only)`` makes a request's session."""
        self._session_factory = session_factory
        self.capacity = capacity
        self.database = database
        self._admission = anyio.CapacityLimiter(capacity) if capacity is not None else None

    @classmethod
    def for_database(cls, name: str) -> "RequestSessions":
        engine = get_engine(name)
        watch_pool(engine, name)
        reader = engine.execution_options(**{READS_ONLY: True})
        return cls(
            lambda reads_only: Session(reader if reads_only else engine), capacity=pool_capacity(engine), database=name
        )

    @asynccontextmanager
    async def unit_of_work(self, *, reads_only: bool = False) -> AsyncIterator[Session]:
        """A session committed when the request succeeds and rolled back when it raises.

        An ``AppError`` with ``keeps_changes`` is an outcome, not a failure: what the request
        recorded (the audit event of a failed log-in) is committed before the error is answered.
        ``reads_only`` sessions do not wait for SQLite's write lock.
        """
        async with self._admitted(), self._session(reads_only) as session:
            yield session

    async def run(self, work: Callable[[Session], T], *, reads_only: bool = False) -> T:
        """``work(session)`` in a unit of work of its own, committed as ``unit_of_work`` commits, in one trip to a
        worker thread: where a dependency, the endpoint and the commit would take three."""
        async with self._admitted():
            return await anyio.to_thread.run_sync(self._work_and_finish, work, reads_only)

    @asynccontextmanager
    async def _admitted(self) -> AsyncIterator[None]:
        """Held while one of at most ``capacity`` admitted requests."""
        if self._admission is None:
            yield
            return
        with waiting_for(self.database):
            await self._admission.acquire()
        try:
            yield
        finally:
            self._admission.release()

    def _work_and_finish(self, work: Callable[[Session], T], reads_only: bool) -> T:
        session = self._session_factory(reads_only)
        try:
            result = work(session)
        except BaseException as error:
            _finish(session, commit=_keeps_changes(error))
            raise
        _finish(session, commit=session.in_transaction())
        return result

    @asynccontextmanager
    async def _session(self, reads_only: bool) -> AsyncIterator[Session]:
        session = self._session_factory(reads_only)
        try:
            yield session
        except BaseException as error:
            with anyio.CancelScope(shield=True):
                await _finish_in_own_thread(session, commit=_keeps_changes(error))
            raise
        with anyio.CancelScope(shield=True):
            if session.in_transaction():
                await _finish_in_own_thread(session, commit=True)
            else:
                session.close()  # it never reached the database: nothing to commit, no trip to a thread


def _keeps_changes(error: BaseException) -> bool:
    """Whether a unit of work that raised ``error`` commits: an ``AppError`` that is an outcome, not a failure."""
    return isinstance(error, AppError) and error.keeps_changes


def _finish(session: Session, commit: bool) -> None:
    """Commit (or not) and close, in one trip to a worker thread."""
    try:
        if commit:
            session.commit()
    finally:
        session.close()


async def _finish_in_own_thread(session: Session, *, commit: bool) -> None:
    # A fresh limiter per call: this request holds a connection, so it must not queue for a shared worker.
    await anyio.to_thread.run_sync(_finish, session, commit, limiter=anyio.CapacityLimiter(1))


def size_worker_threads(capacities: Iterable[int | None]) -> None:
    """Give every request admitted to any database a worker thread, plus spares for requests without a database."""
    bounded = [capacity for capacity in capacities if capacity is not None]
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(limiter.total_tokens, sum(bounded) + SPARE_WORKER_THREADS)
