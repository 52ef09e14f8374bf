"""The ceiling: a bare FastAPI ``async def`` endpoint, served exactly like the app."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}
