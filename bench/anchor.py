"""The same-work anchor: the bench's three API rows written the plain async SQLModel way, as a yardstick.

``GET /api/v1/users/me``, ``GET /api/v1/workspaces`` and ``PATCH /api/v1/workspaces/{id}`` do what the service's do
(the bearer token checked with pyjwt, its password stamp compared, its log-in session looked up; the caller's 20
oldest workspaces with the caller's role, in keyset order, one row more; the membership and role checked, the new
name and an outbox row written in one commit), the way the SQLModel docs teach for async: ``AsyncSession`` on
SQLAlchemy's asyncio engine over asyncpg, ``async def`` endpoints, a yield-session dependency, the default pool,
pydantic response models. Kept plain on purpose: it is not part of the service, and nothing in it is tuned. It reads
the service's tables (the models of src/api/v1/models) in a database of its own.
"""

import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from src.api.v1.models.login_session import LoginSession
from src.api.v1.models.outbox_event import OutboxEvent
from src.api.v1.models.user import User
from src.api.v1.models.workspace import Workspace
from src.api.v1.models.workspace_member import WorkspaceMember
from src.core.config import get_settings
from src.core.timestamps import utcnow

settings = get_settings()
engine = create_async_engine(settings.database_url("core").replace("+psycopg2", "+asyncpg"))
app = FastAPI()


async def get_session() -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_current_user(session: SessionDep, authorization: Annotated[str, Header()]) -> User:
    try:
        claims = jwt.decode(
            authorization.removeprefix("Bearer "),
            settings.secret_key,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except jwt.PyJWTError:
        raise HTTPException(status_code=401) from None
    user = await session.get(User, uuid.UUID(claims["sub"]))
    key = settings.secret_key.encode()
    stamp = hmac.new(key, user.hashed_password.encode(), hashlib.sha256).hexdigest()[:32] if user else ""
    if user is None or not hmac.compare_digest(stamp, claims["pwd"]):
        raise HTTPException(status_code=401)
    login = await session.get(LoginSession, uuid.UUID(claims["sid"]))
    if login is None or login.user_id != user.id or login.expires_at <= utcnow():
        raise HTTPException(status_code=401)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


class UserPublic(BaseModel):
    id: uuid.UUID
    email: str
    username: str
    first_name: str
    last_name: str
    full_name: str
    is_active: bool
    is_admin: bool
    email_verified_at: datetime | None
    created_at: datetime


class WorkspacePublic(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    role: str


class WorkspacePage(BaseModel):
    items: list[WorkspacePublic]
    next_cursor: str | None


class WorkspaceUpdate(BaseModel):
    name: str


@app.get("/api/v1/users/me", response_model=UserPublic)
async def read_me(user: CurrentUser) -> User:
    return user


@app.get("/api/v1/workspaces")
async def list_workspaces(user: CurrentUser, session: SessionDep, limit: int = 20) -> WorkspacePage:
    statement = (
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(WorkspaceMember.user_id == user.id)
        .order_by(col(Workspace.created_at), col(Workspace.id))
        .limit(limit + 1)
    )
    rows = (await session.exec(statement)).all()
    items = [
        WorkspacePublic(id=workspace.id, name=workspace.name, created_at=workspace.created_at, role=role)
        for workspace, role in rows[:limit]
    ]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return WorkspacePage(items=items, next_cursor=f"{last.created_at.isoformat()}.{last.id.hex}" if last else None)


@app.patch("/api/v1/workspaces/{workspace_id}")
async def rename_workspace(
    workspace_id: uuid.UUID, body: WorkspaceUpdate, user: CurrentUser, session: SessionDep
) -> WorkspacePublic:
    statement = (
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, col(WorkspaceMember.workspace_id) == Workspace.id)
        .where(Workspace.id == workspace_id, WorkspaceMember.user_id == user.id)
    )
    found = (await session.exec(statement)).first()
    if found is None:
        raise HTTPException(status_code=404)
    workspace, role = found
    if role not in ("owner", "admin"):
        raise HTTPException(status_code=403)
    session.add(
        OutboxEvent(
            action="workspace.updated",
            outcome="success",
            actor_type="user",
            actor_id=user.id,
            workspace_id=workspace.id,
            target_type="workspace",
            target_id=workspace.id,
            context={},
            details={"before": {"name": workspace.name}, "after": {"name": body.name}},
        )
    )
    workspace.name, workspace.updated_at = body.name, utcnow()
    session.add(workspace)
    await session.commit()
    return WorkspacePublic(id=workspace.id, name=workspace.name, created_at=workspace.created_at, role=role)
