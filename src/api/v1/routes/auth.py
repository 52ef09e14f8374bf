"""Bearer tokens for the OAuth2 password flow, and the links mailed to get back into an account or confirm its email.

The requests for a link answer 202 whether or not an account has the email: they tell nothing of who signed up.
"""

from typing import Annotated

from fastapi import Form, Request, Response, status
from sqlmodel import Session

from src.api.contract import tagged_router
from src.api.dependencies import ValidToken, get_current_user, request_sessions
from src.api.error_handling import error_responses
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.fields import SearchText
from src.api.v1.schemas.users import EmailAddress, EmailConfirmation, Refresh, ResetPassword, Token
from src.core.errors import Busy, InvalidCredentials, InvalidToken, TooManyAttempts
from src.core.security import hash_new_password
from src.services import accounts, login_sessions, users
from src.services.account_links import InvalidLink
from src.services.login_sessions import SessionNotFound
from src.services.users import EmailNotConfirmed, EmailTaken

router = tagged_router("auth", f"{API_PREFIX}/auth")


@router.post("/token", responses=error_responses(InvalidCredentials, EmailNotConfirmed, TooManyAttempts, Busy))
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

    Repeated failures lock the account, and the client address, out for a while: 429 with Retry-After. With
    LOGIN_REQUIRES_VERIFIED_EMAIL, an account whose email is not confirmed yet gets 403 ``email_not_confirmed``.
    """
    sessions = request_sessions(request, "core")
    # Two short units of work around the password check: a hash takes a quarter second, and while it
    # runs the log-in holds no connection, no lock (SQLite's write lock included) and no worker thread.
    attempt = await sessions.run(lambda session: users.find_login(session, username), reads_only=True)
    succeeded = await users.password_matches(attempt, password)
    tokens = await sessions.run(lambda session: users.record_login(session, attempt, succeeded=succeeded))
    return never_stored(response, Token.of(tokens))


def never_stored(response: Response, token: Token) -> Token:
    # RFC 6749 5.1: a response carrying a token is never stored by a cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return token


@router.post("/refresh", responses=error_responses(InvalidToken))
async def refresh(request: Request, response: Response, body: Refresh) -> Token:
    """New tokens for the session of ``refresh_token``, which is then used up: keep the new one. A used refresh
    token presented again ends its session (it was copied): 401, and every token of the session stops working."""
    sessions = request_sessions(request, "core")
    tokens = await sessions.run(lambda session: login_sessions.refresh(session, body.refresh_token))
    return never_stored(response, Token.of(tokens))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(SessionNotFound))
async def log_out(request: Request, token: ValidToken) -> Response:
    """End the session of this token: its access and refresh tokens stop working. 404 for a token issued before
    sessions existed, which simply expires."""

    def end(session: Session) -> None:
        user = get_current_user(session, token)
        if token.session_id is None:
            raise SessionNotFound("this token has no session: it expires on its own")
        login_sessions.end(session, user.id, token.session_id, action="user.logged_out")

    await request_sessions(request, "core").run(end)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/forgot-password",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=error_responses(TooManyAttempts),
)
async def forgot_password(request: Request, body: EmailAddress) -> Response:
    """Mail a password-reset link, valid PASSWORD_RESET_MINUTES, to the email when an account has it. 429 after
    ACCOUNT_MAIL_PER_EMAIL requests for one email, or ACCOUNT_MAIL_PER_ADDRESS from one address, lately."""
    await request_sessions(request, "core").run(lambda session: accounts.request_password_reset(session, body.email))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/reset-password", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(InvalidLink, Busy))
async def reset_password(request: Request, body: ResetPassword) -> Response:
    """Set a new password with the token of a reset link; it confirms the email too. Every token issued before
    stops working: log in again. 404 ``invalid_link`` when the link is unknown, used, expired, or older than the
    password."""
    sessions = request_sessions(request, "core")
    await sessions.run(lambda session: accounts.check_reset_link(session, body.token), reads_only=True)
    new_password_hash = await hash_new_password(body.new_password)

    def reset(session: Session) -> None:
        accounts.reset_password(session, body.token, new_password_hash=new_password_hash)

    await sessions.run(reset)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/request-verify-token",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=error_responses(TooManyAttempts),
)
async def request_verify_token(request: Request, body: EmailAddress) -> Response:
    """Mail a new confirmation link to the email when an account has it unconfirmed (one is mailed at sign-up).
    Throttled as ``/auth/forgot-password``."""
    await request_sessions(request, "core").run(lambda session: accounts.request_confirmation(session, body.email))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/verify", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(InvalidLink, EmailTaken))
async def verify(request: Request, body: EmailConfirmation) -> Response:
    """Confirm an email with the token of a confirmation link: the account's own, or the new address of a change,
    which then becomes the account's email (409 when another account took it meanwhile). 404 ``invalid_link`` when
    the link is unknown, used or expired."""
    await request_sessions(request, "core").run(lambda session: accounts.confirm_email(session, body.token))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
