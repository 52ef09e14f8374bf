"""The v1 API: every resource's router, each under API_PREFIX."""

from src.api.v1.routes import audit, auth, members, users, workspaces

routers = [resource.router for resource in (users, auth, workspaces, members, audit)]
