"""Sign-up, the caller's own profile and password.

Sign-up and a password change hash a password: they do it between two units of work, holding no connection,
admission slot or lock while the hash is made (as a log-in does, src/api/v1/routes/auth.py).
"""

import uuid
from collections.abc import AsyncIterator

from fastapi import Request, Response, status
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from src.api.contract import VERSIONED, created_response, location, tagged_router
from src.api.dependencies import IfMatch, ValidToken, get_current_user, request_sessions
from src.api.error_handling import error_responses
from src.api.idempotency import created
from src.api.v1 import API_PREFIX, audit_export
from src.api.v1.schemas.users import (
    AccountDeletion,
    AccountExport,
    EmailChange,
    Membership,
    PasswordChange,
    SessionPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from src.core.errors import AdminOnly, Busy, TooManyAttempts, WrongPassword
from src.core.security import Credentials, checks_in_flight, hash_new_password
from src.core.sessions import RequestSessions
from src.core.timestamps import utcnow
from src.services import account_deletion, accounts, audit_log, login_sessions, login_throttle, users, workspaces
from src.services.accounts import OwnAccount, SameEmail
from src.services.login_sessions import SessionNotFound
from src.services.members import LastOwner, UserNotFound
from src.services.users import EmailTaken, UsernameTaken

router = tagged_router("users", f"{API_PREFIX}/users")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=created_response(replayable=False) | error_responses(EmailTaken, UsernameTaken, TooManyAttempts, Busy),
)
async def sign_up(request: Request, body: UserCreate) -> Response:
    """Create an account; 409 names the email or username already in use (a retried sign-up included: the account
    exists, log in); 429 after SIGN_UPS_PER_ADDRESS sign-ups from one address."""
    sessions = request_sessions(request, "core")
    await sessions.run(users.refuse_sign_up_while_throttled, reads_only=True)
    # Like log-ins, at most PASSWORD_CHECKS_PER_CLIENT sign-ups of one address hash at once; more are refused unhashed.
    with checks_in_flight.holding(limit.key for limit in login_throttle.sign_up_limit()):
        hashed_password = await hash_new_password(body.password)
    fields = body.model_dump(exclude={"password"})

    def register(session: Session) -> tuple[UserPublic, str]:
        user = users.register_user(session, **fields, hashed_password=hashed_password)
        # The account is read, once logged in, as the caller's own.
        return UserPublic.model_validate(user), location(request, "read_me")

    return await sessions.run(lambda session: created(*register(session)))


@router.get("/me", responses=VERSIONED)
async def read_me(request: Request, response: Response, token: ValidToken) -> UserPublic:
    """The caller's account, with its version in ETag."""

    def read(session: Session) -> tuple[UserPublic, str]:
        user = get_current_user(session, token)
        return UserPublic.model_validate(user), users.version(user)

    me, response.headers["ETag"] = await request_sessions(request, "core").run(read, reads_only=True)
    return me


@router.patch("/me", responses=VERSIONED)
async def update_me(
    request: Request, response: Response, body: UserUpdate, token: ValidToken, if_match: IfMatch
) -> UserPublic:
    """Change names; a name left out, or null, stays as it is. With If-Match, only if the account is still that
    version (412 otherwise)."""

    def update(session: Session) -> tuple[UserPublic, str]:
        user = users.update_profile(session, get_current_user(session, token), **body.model_dump(), if_match=if_match)
        return UserPublic.model_validate(user), users.version(user)

    me, response.headers["ETag"] = await request_sessions(request, "core").run(update)
    return me


async def checked_password(sessions: RequestSessions, token: Credentials, password: str) -> users.LoginAttempt:
    """The check of the caller's current password, asked again before a change that needs it: ``WrongPassword``
    (counted as a failed log-in of the account, and recorded) when it does not match."""
    check = await sessions.run(
        lambda session: users.password_check(session, get_current_user(session, token)), reads_only=True
    )
    if not await users.password_matches(check, password):
        await sessions.run(lambda session: users.record_wrong_password(session, check))
    return check


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(WrongPassword, TooManyAttempts, Busy),
)
async def change_password(request: Request, body: PasswordChange, token: ValidToken) -> Response:
    """Replace the password; 403 when ``current_password`` is wrong. Wrong current passwords count as failed log-ins
    of the account (429 once it is locked out) and are recorded. Tokens issued before stop working: log in again."""
    sessions = request_sessions(request, "core")
    check = await checked_password(sessions, token, body.current_password)
    new_password_hash = await hash_new_password(body.new_password)

    def change(session: Session) -> None:
        user = get_current_user(session, token)
        users.change_password(session, user, new_password_hash=new_password_hash, checked_hash=check.hashed_password)

    await sessions.run(change)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/me/email",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=error_responses(WrongPassword, SameEmail, TooManyAttempts, Busy),
)
async def change_email(request: Request, body: EmailChange, token: ValidToken) -> Response:
    """Ask to change the email: a confirmation link goes to the new address and a notice to the current one; the
    email changes once the link is followed (``POST /auth/verify``). When an account has the new address, the
    answer is the same and that address is told so instead. 403 when ``current_password`` is wrong."""
    sessions = request_sessions(request, "core")
    await checked_password(sessions, token, body.current_password)
    await sessions.run(
        lambda session: accounts.request_email_change(session, get_current_user(session, token), body.email)
    )
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(WrongPassword, LastOwner, TooManyAttempts, Busy),
)
async def delete_me(request: Request, body: AccountDeletion, token: ValidToken) -> Response:
    """Delete the account and erase the caller from both databases: the account and memberships go, and the
    caller's audit events keep their ids but lose their personal data (docs/accounts.md). 403 when
    ``current_password`` is wrong; 409 ``last_owner`` lists the workspaces the caller must hand over or delete
    first."""
    sessions = request_sessions(request, "core")
    check = await checked_password(sessions, token, body.current_password)
    await sessions.run(
        lambda session: account_deletion.delete_account(
            session, get_current_user(session, token), checked_hash=check.hashed_password
        )
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/me/export",
    response_class=StreamingResponse,
    responses={200: {"model": AccountExport, "content": {"application/json": {}}}},
)
async def export_me(request: Request, token: ValidToken) -> StreamingResponse:
    """Everything both databases hold about the caller, as one JSON document, streamed: the account, the
    memberships, and every audit event the caller did or that was done to the account."""

    def read(session: Session) -> tuple[UserPublic, list[Membership]]:
        user = get_current_user(session, token)
        return UserPublic.model_validate(user), [
            Membership(workspace_id=workspace.id, workspace_name=workspace.name, role=role, joined_at=joined_at)
            for workspace, role, joined_at in workspaces.memberships_of(session, user.id)
        ]

    account, memberships = await request_sessions(request, "core").run(read, reads_only=True)
    # The first batch is read before the first byte is sent: an audit database that does not answer is a 503.
    scope = audit_log.done_by_or_to(account.id)
    pages = audit_export.batches(request, scope, audit_log.EventFilter(), person=account.id)
    first = await anext(pages)
    head = AccountExport(exported_at=utcnow(), account=account, memberships=memberships, audit_events=[])

    async def body() -> AsyncIterator[str]:
        yield head.model_dump_json().removesuffix("]}")
        separator, batch = "", first
        while batch:
            for event in batch:
                yield separator + event.model_dump_json()
                separator = ","
            batch = await anext(pages, [])
        yield "]}"

    return StreamingResponse(body(), media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/me/sessions")
async def list_my_sessions(request: Request, token: ValidToken) -> list[SessionPublic]:
    """The caller's live sessions, the most recently used first; ``current`` marks the one of this token."""

    def read(session: Session) -> list[SessionPublic]:
        user = get_current_user(session, token)
        return [
            SessionPublic.model_validate(login).model_copy(update={"current": login.id == token.session_id})
            for login in login_sessions.sessions_of(session, user.id)
        ]

    return await request_sessions(request, "core").run(read, reads_only=True)


@router.delete(
    "/me/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(SessionNotFound)
)
async def end_my_session(request: Request, session_id: uuid.UUID, token: ValidToken) -> Response:
    """End one of the caller's sessions (another device's, say): its tokens stop working at once."""

    def end(session: Session) -> None:
        user = get_current_user(session, token)
        login_sessions.end(session, user.id, session_id, action="user.session_ended")

    await request_sessions(request, "core").run(end)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{user_id}/deactivate", responses=error_responses(AdminOnly, OwnAccount, UserNotFound))
async def deactivate_user(request: Request, user_id: uuid.UUID, token: ValidToken) -> UserPublic:
    """Deactivate an account (admins of the service only): it cannot log in and its tokens stop working."""
    return await set_active(request, token, user_id, active=False)


@router.post("/{user_id}/reactivate", responses=error_responses(AdminOnly, OwnAccount, UserNotFound))
async def reactivate_user(request: Request, user_id: uuid.UUID, token: ValidToken) -> UserPublic:
    """Reactivate a deactivated account (admins of the service only); tokens issued before stay revoked."""
    return await set_active(request, token, user_id, active=True)


async def set_active(request: Request, token: Credentials, user_id: uuid.UUID, *, active: bool) -> UserPublic:
    def change(session: Session) -> UserPublic:
        user = accounts.set_active(session, get_current_user(session, token), user_id, active=active)
        return UserPublic.model_validate(user)

    return await request_sessions(request, "core").run(change)
