"""``GET /docs``: Swagger UI, its script and style served by the app from the locked fastapi-swagger package, so
that the page loads nothing from elsewhere and its version moves only with requirements.lock. Off outside local
and test unless DOCS_ENABLED (src/main.py)."""

from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css"}


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/docs/{asset}")
async def swagger_ui_asset(asset: str) -> Response:
    if asset not in ASSETS:
        raise HTTPException(status_code=404)
    content = files("fastapi_swagger.resources").joinpath(asset).read_bytes()
    # Named by the locked version's content: a browser may keep it for a day.
    return Response(content, media_type=ASSETS[asset], headers={"Cache-Control": "public, max-age=86400"})
