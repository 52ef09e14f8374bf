"""The v1 API: every resource's router, each under API_PREFIX."""

from src.api.v1.routes import api_keys, audit, auth, invitations, members, users, workspaces

routers = [resource.router for resource in (users, auth, workspaces, members, invitations, api_keys, audit)]
