"""Password hashing (argon2id, pwdlib) and bearer tokens (HS256 JWT, pyjwt)."""

import asyncio
import hashlib
import hmac
import os
import secrets
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TypeVar

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from src.core.config import get_settings
from src.core.errors import Busy, InvalidToken, TooManyAttempts
from src.core.timestamps import utcnow

# Only this algorithm is accepted when decoding, which rules out "none" and key confusion.
JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "pwd"]
HASHING_NICENESS = 10
T = TypeVar("T")


@cache
def _password_hash(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHash:
    return PasswordHash((Argon2Hasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism),))


def _hash_cost() -> tuple[int, int, int]:
    settings = get_settings()
    return settings.password_hash_memory_kib, settings.password_hash_time_cost, settings.password_hash_parallelism


def password_hash() -> PasswordHash:
    return _password_hash(*_hash_cost())


def _yield_the_cpu() -> None:
    # Linux schedules threads one by one: a hash (and argon2's own threads) runs at a lower priority than
    # the requests that do not hash, so those keep their latency while log-ins are in flight. Only ever
    # lowered (raising it needs a privilege), and a refusal is no reason to stop hashing.
    if sys.platform == "linux":
        thread = threading.get_native_id()
        with suppress(OSError):
            niceness = max(os.getpriority(os.PRIO_PROCESS, thread), HASHING_NICENESS)
            os.setpriority(os.PRIO_PROCESS, thread, niceness)


@cache
def _hashing_threads(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="password-hash", initializer=_yield_the_cpu)


# A forked child has none of its parent's threads: it starts a pool of its own.
os.register_at_fork(after_in_child=_hashing_threads.cache_clear)


def hashing_threads() -> ThreadPoolExecutor:
    """At most PASSWORD_HASH_CONCURRENCY hashes at once: each takes a core and 64 MiB for a quarter second,
    so a burst of log-ins must queue rather than starve every other request of CPU and memory."""
    return _hashing_threads(get_settings().password_hash_concurrency)


class _HashQueue:
    """Counts the hashes waiting or running in this process; past PASSWORD_HASH_QUEUE, more are refused at once
    (``Busy``): a flood must not build a queue that every later log-in waits behind."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._queued = 0

    def submit(self, function: Callable[..., T], *args: object) -> "Future[T]":
        with self._lock:
            if self._queued >= get_settings().password_hash_queue:
                raise Busy("too many password checks are waiting; retry in a second")
            self._queued += 1
        future = hashing_threads().submit(function, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: object) -> None:
        with self._lock:
            self._queued -= 1


_hash_queue = _HashQueue()
# A forked child has no hashes of its parent's in flight.
os.register_at_fork(after_in_child=_hash_queue.reset)


async def hash_new_password(password: str) -> str:
    """A hash of a new password, awaited on the event loop: the wait holds no worker thread, connection or lock."""
    return await asyncio.wrap_future(_hash_queue.submit(password_hash().hash, password))


async def password_matches_hash(password: str, hashed_password: str) -> bool:
    """Whether the password is the hashed one, awaited on the event loop like ``hash_new_password``."""
    return await asyncio.wrap_future(_hash_queue.submit(password_hash().verify, password, hashed_password))


def hash_password(password: str) -> str:
    """``hash_new_password`` for code outside requests (scripts, tests): it blocks until the hash is made."""
    return _hash_queue.submit(password_hash().hash, password).result()


def verify_password(password: str, hashed_password: str) -> bool:
    """``password_matches_hash``, blocking, for code outside requests."""
    return _hash_queue.submit(password_hash().verify, password, hashed_password).result()


class ChecksInFlight:
    """The password checks each client (an account, an address) has in flight in this process: one more than
    PASSWORD_CHECKS_PER_CLIENT is refused before its hash starts, so no client can queue up hashing work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    @contextmanager
    def holding(self, keys: Iterable[str]) -> Iterator[None]:
        keys = list(keys)
        with self._lock:
            if any(self._counts.get(key, 0) >= get_settings().password_checks_per_client for key in keys):
                raise TooManyAttempts(
                    "another password check for this account or address is in progress", retry_after_seconds=1
                )
            for key in keys:
                self._counts[key] = self._counts.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    self._counts[key] -= 1
                    if not self._counts[key]:
                        del self._counts[key]


checks_in_flight = ChecksInFlight()


@cache
def _dummy_hash(memory_kib: int, time_cost: int, parallelism: int) -> str:
    return _password_hash(memory_kib, time_cost, parallelism).hash("not-a-password")


def _verify_against_dummy(password: str) -> None:
    dummy = _dummy_hash(*_hash_cost())
    password_hash().verify(password, dummy)


async def spend_verification_time(password: str) -> None:
    """Verify against a throwaway hash, so an unknown login takes as long as a wrong password."""
    await asyncio.wrap_future(_hash_queue.submit(_verify_against_dummy, password))


def password_stamp(password_hash: str, revoked_at: datetime | None = None) -> str:
    """Changes whenever the password does (every hash has a fresh salt) or tokens are revoked (``revoked_at``), so
    either ends the tokens and links issued before; keyed with the secret key: a token reveals nothing of the hash."""
    material = password_hash if revoked_at is None else f"{password_hash}|{revoked_at.astimezone(UTC).isoformat()}"
    return hmac.new(get_settings().secret_key.encode(), material.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    password_stamp: str
    # The log-in session the token was issued for; None in a token issued before sessions existed.
    session_id: uuid.UUID | None = None

    def matches_password(self, password_hash: str, revoked_at: datetime | None = None) -> bool:
        return hmac.compare_digest(self.password_stamp, password_stamp(password_hash, revoked_at))


# What an API key starts with, so that secret scanners (and this service) know one when they see it.
API_KEY_PREFIX = "fsk_"


@dataclass
class ApiKeyCredentials:
    """A bearer API key, known by its digest; ``key_id`` once the key was found valid (src/services/api_keys.py)."""

    digest: str
    key_id: uuid.UUID | None = None
    session_id: None = None  # as TokenClaims: a key has no log-in session


Credentials = TokenClaims | ApiKeyCredentials


SECRET_LENGTH = 43  # characters of new_secret(): 32 bytes in unpadded URL-safe base64


def new_secret() -> str:
    """A random secret for a link, a refresh token or an API key."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """How a secret is kept: its SHA-256, hex. The secret itself is never stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


API_KEY_LENGTH = len(API_KEY_PREFIX) + SECRET_LENGTH


def read_credentials(bearer: str) -> Credentials:
    """An API key's digest, or a valid access token's claims (``InvalidToken`` otherwise)."""
    if bearer.startswith(API_KEY_PREFIX):
        if len(bearer) != API_KEY_LENGTH:
            raise InvalidToken("the API key is unknown, revoked or expired")
        return ApiKeyCredentials(secret_digest(bearer))
    return decode_access_token(bearer)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime
    expires_in: int


def create_access_token(
    user_id: uuid.UUID,
    *,
    password_hash: str,
    session_id: uuid.UUID | None = None,
    revoked_at: datetime | None = None,
    now: datetime | None = None,
) -> AccessToken:
    settings = get_settings()
    issued_at = now or utcnow()
    lifetime = timedelta(minutes=settings.access_token_expire_minutes)
    expires_at = issued_at + lifetime
    claims = {
        "sub": str(user_id),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued_at,
        "exp": expires_at,
        "pwd": password_stamp(password_hash, revoked_at),
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    token = jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)
    return AccessToken(token=token, expires_at=expires_at, expires_in=int(lifetime.total_seconds()))


def decode_access_token(token: str) -> TokenClaims:
    """The user id and password stamp of a valid token; ``InvalidToken`` for anything else."""
    settings = get_settings()
    try:
        claims = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[JWT_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
        )
        session_id = uuid.UUID(str(claims["sid"])) if "sid" in claims else None
        return TokenClaims(uuid.UUID(str(claims["sub"])), str(claims["pwd"]), session_id)
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except (jwt.PyJWTError, ValueError):
        raise InvalidToken("the token is invalid") from None
