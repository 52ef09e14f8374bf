"""Bearer tokens for the OAuth2 password flow."""

from typing import Annotated

from fastapi import APIRouter, Form

from src.api.dependencies import SessionDep
from src.api.v1.schemas.users import Token
from src.core.errors import error_responses
from src.core.security import create_access_token
from src.services import users

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", responses=error_responses(400, 401, 422))
def issue_token(
    session: SessionDep,
    username: Annotated[str, Form(min_length=1, max_length=320, description="the username or the email")],
    password: Annotated[str, Form(min_length=1, max_length=128)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> Token:
    """Exchange a username (or email) and password for a bearer token (OAuth2 password form)."""
    user = users.authenticate(session, login=username, password=password)
    token = create_access_token(user.id, password_hash=user.hashed_password)
    return Token(access_token=token.token, expires_in=token.expires_in)
