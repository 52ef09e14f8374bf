"""Sign-up and the caller's own profile."""

from fastapi import APIRouter, status

from src.api.dependencies import CurrentUser, SessionDep
from src.api.error_handling import error_responses
from src.api.v1 import API_PREFIX
from src.api.v1.schemas.users import UserCreate, UserPublic, UserUpdate
from src.services import users

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409, 422))
def sign_up(body: UserCreate, session: SessionDep) -> UserPublic:
    """Create an account; 409 names the email or username already in use."""
    user = users.register_user(session, **body.model_dump())
    return UserPublic.model_validate(user)


@router.get("/me", responses=error_responses(401))
async def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.patch("/me", responses=error_responses(400, 401, 422))
def update_me(body: UserUpdate, user: CurrentUser, session: SessionDep) -> UserPublic:
    """Change names or the password; a new password needs ``current_password`` (400 when it is wrong)."""
    user = users.update_profile(session, user, **body.model_dump())
    return UserPublic.model_validate(user)
