"""Sign-up, the caller's own profile and password.

Sign-up and a password change hash a password: they do it between two units of work, holding no connection,
admission slot or lock while the hash is made (as a log-in does, src/api/v1/routes/auth.py).
"""

from fastapi import Request, Response, status
from sqlmodel import Session

from src.api.contract import VERSIONED, created_response, location, tagged_router
from src.api.dependencies import IfMatch, ValidToken, get_current_user, request_sessions
from src.api.error_handling import error_responses
from src.api.idempotency import created
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.users import PasswordChange, UserCreate, UserPublic, UserUpdate
from src.core.errors import Busy, TooManyAttempts, WrongPassword
from src.core.security import checks_in_flight, hash_new_password
from src.services import login_throttle, users
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


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(WrongPassword, TooManyAttempts, Busy),
)
async def change_password(request: Request, body: PasswordChange, token: ValidToken) -> Response:
    """Replace the password; 403 when ``current_password`` is wrong. Wrong current passwords count as failed log-ins
    of the account (429 once it is locked out) and are recorded. Tokens issued before stop working: log in again."""
    sessions = request_sessions(request, "core")
    check = await sessions.run(
        lambda session: users.password_check(session, get_current_user(session, token)), reads_only=True
    )
    if not await users.password_matches(check, body.current_password):
        await sessions.run(lambda session: users.record_wrong_password(session, check))
    new_password_hash = await hash_new_password(body.new_password)

    def change(session: Session) -> None:
        user = get_current_user(session, token)
        users.change_password(session, user, new_password_hash=new_password_hash, checked_hash=check.hashed_password)

    await sessions.run(change)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
