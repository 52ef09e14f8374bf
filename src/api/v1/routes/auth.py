"""Bearer tokens for the OAuth2 password flow."""

from typing import Annotated

from fastapi import Form, Request, Response

from src.api.contract import tagged_router
from src.api.dependencies import request_sessions
from src.api.error_handling import error_responses
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.fields import SearchText
from src.api.v1.schemas.users import Token
from src.core.errors import Busy, InvalidCredentials, TooManyAttempts
from src.services import users

router = tagged_router("auth", f"{API_PREFIX}/auth")


@router.post("/token", responses=error_responses(InvalidCredentials, TooManyAttempts, Busy))
async def issue_token(
    request: Request,
    response: Response,
    username: Annotated[
        SearchText, Form(min_length=1, max_length=320, description="the username or the email", examples=["ada"])
    ],
    password: Annotated[str, Form(min_length=1, max_length=128, examples=["analytical-engine-1843"])],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> Token:
    """Exchange a username (or email) and password for a bearer token (OAuth2 password form).

    Repeated failures lock the account, and the client address, out for a while: 429 with Retry-After.
    """
    sessions = request_sessions(request, "core")
    # Two short units of work around the password check: a hash takes a quarter second, and while it
    # runs the log-in holds no connection, no lock (SQLite's write lock included) and no worker thread.
    attempt = await sessions.run(lambda session: users.find_login(session, username), reads_only=True)
    succeeded = await users.password_matches(attempt, password)
    token = await sessions.run(lambda session: users.record_login(session, attempt, succeeded=succeeded))
    # RFC 6749 5.1: a response carrying a token is never stored by a cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return Token(access_token=token.token, expires_in=token.expires_in)
