"""The HTTP API of the erasure service (FastAPI; served by uvicorn, see :mod:`qpae.service.server`).

``POST /requests``, ``GET /requests/{id}``, ``GET /models/current``, ``GET /models/{sha}/receipt``
and ``GET /health``. Every call but health needs ``Authorization: Bearer <token>``; a missing or
wrong token is refused with 401 before the body is read, so an unauthenticated caller learns
nothing (not even whether a speaker exists). Bodies are validated by pydantic: speaker names are
strings (a JSON number is refused, never read as a class index).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from qpae.service.ledger import LedgerError
from qpae.service.service import ErasureService, RefusedError


class ErasureRequest(BaseModel):
    """The body of ``POST /requests``."""

    model_config = ConfigDict(extra="forbid")
    speakers: Annotated[
        list[Annotated[StrictStr, Field(min_length=1, max_length=200)]], Field(min_length=1, max_length=100)
    ]
    requester: Annotated[StrictStr, Field(max_length=200)] | None = None


def create_app(service: ErasureService, deployment: str, token: str) -> FastAPI:
    """The API of ``deployment`` in ``service``, guarded by ``token``."""
    if not token or len(token) < 16:
        raise ValueError("the API token must be at least 16 characters (set it in the environment)")
    app = FastAPI(title="qpae erasure service", version="1")
    expected = f"Bearer {token}".encode()

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if request.url.path != "/health":
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"detail": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/requests", status_code=202)
    def submit(body: ErasureRequest) -> dict:
        try:
            request = service.submit(deployment, body.speakers, body.requester)
        except RefusedError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        return request.public()

    @app.get("/requests/{request_id}")
    def status(request_id: int) -> dict:
        try:
            request = service.ledger.request(request_id)
        except LedgerError:
            raise HTTPException(status_code=404, detail=f"no request {request_id}") from None
        if request.deployment != deployment:
            raise HTTPException(status_code=404, detail=f"no request {request_id}")
        return request.public()

    @app.get("/models/current")
    def current() -> dict:
        version = service.ledger.current(deployment)
        return {**version.public(), "deployment": deployment, "chain_head": service.chain_head()}

    @app.get("/models/{sha}/receipt")
    def receipt(sha: str) -> dict:
        try:
            version = service.resolve_version(sha)
        except RefusedError as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        if version.deployment != deployment:
            raise HTTPException(status_code=404, detail=f"no version {sha} in this deployment")
        return service.receipt(version)

    return app
