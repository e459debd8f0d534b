"""The web app: one page (shipped in `static/`, no CDN) and a JSON + Server-Sent-Events API.

  GET  /             the page            GET /api/model   the model panel, samplers, defaults
  GET  /health       {"status": "ok", "active", "capacity"}: answers while generations run
  POST /api/generate settings (JSON) -> text/event-stream of frames: start, step..., then
                     done | cancelled | error (see `stream.py` and `session.py`)

Safe by default: the CLI binds 127.0.0.1 and only loopback Host headers are accepted (no DNS
rebinding); bodies over `max_body_bytes` get 413; settings past the limits 422 with a
message; a generation beyond `max_concurrent` 429; a client that disconnects cancels its
generation; the page inserts token text as text (textContent) and a Content-Security-Policy
allows no inline script at all.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import StreamingResponse

from unmask.errors import UserError
from unmask.runtime.precision import PrecisionChoice
from unmask.serve.info import model_info
from unmask.serve.session import Busy, FrameChannel, Generation, Slots
from unmask.serve.settings import Limits, Settings, prepare

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC = Path(str(resources.files("unmask.serve") / "static"))
FINAL = ("done", "cancelled", "error")
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class GenerateBody(BaseModel):
    """The page's settings; null = the checkpoint's default. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = ""
    policy: str | None = None
    length: int | None = None
    steps: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    block_length: int | None = None
    gumbel64: bool = False
    seed: int = 0
    speed: float = 0.0


class SecurityHeaders:
    """Adds `HEADERS` to every response (pure ASGI: streaming passes straight through)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (k.encode(), v.encode()) for k, v in HEADERS.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class EventStream(StreamingResponse):
    """The frames of one generation as Server-Sent Events. Whatever ends the response -- the
    last frame, the client disconnecting, a failed send -- the generation is cancelled (a
    no-op once it has finished), so a vanished client frees its slot at the next step."""

    media_type = "text/event-stream"

    def __init__(self, generation: Generation, channel: FrameChannel):
        self.generation, self.channel = generation, channel
        super().__init__(self._events(), headers={"cache-control": "no-store",
                                                  "x-accel-buffering": "no"})

    async def _events(self):
        while True:
            frame = await self.channel.get()
            yield f"event: {frame['type']}\ndata: {json.dumps(frame, ensure_ascii=False)}\n\n"
            self.channel.taken()
            if frame["type"] in FINAL:
                return

    async def __call__(self, scope, receive, send) -> None:
        # Starlette watches for a disconnect only under ASGI < 2.4; watch always.
        try:
            async with anyio.create_task_group() as tasks:
                async def watch() -> None:
                    await self.listen_for_disconnect(receive)
                    tasks.cancel_scope.cancel()

                tasks.start_soon(watch)
                try:
                    await self.stream_response(send)
                except OSError:  # the client is gone
                    pass
                tasks.cancel_scope.cancel()
        finally:
            self.generation.cancel("the client disconnected")
            self.channel.close()
            await self.body_iterator.aclose()


def _problem(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers or None)


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (checked before reading when the
    client declares a Content-Length, and while reading when it does not)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(pre, limits: Limits | None = None,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
               precision: str = "float32") -> FastAPI:
    """The app serving checkpoint `pre` (a `Pretrained`). `allowed_hosts=None` accepts any
    Host header (for a server bound to a non-loopback address on purpose); generations run
    in `precision` (float32, or bfloat16 under autocast)."""
    limits = limits or Limits()
    slots = Slots(limits, autocast=PrecisionChoice(precision, "explicit").autocast)

    @asynccontextmanager
    async def lifespan(app):
        yield
        slots.cancel_all("the server is shutting down")

    app = FastAPI(title="unmask", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.pre, app.state.limits, app.state.slots = pre, limits, slots
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or ["*"]))
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/health")
    async def health():
        return {"status": "ok", "active": len(slots.active), "capacity": slots.capacity}

    @app.get("/api/model")
    def model():  # plain def: FastAPI runs it in a worker thread (it reads a few files)
        return {**model_info(pre, limits), "precision": precision}

    @app.post("/api/generate")
    async def generate(request: Request):
        raw = await _read_body(request, limits.max_body_bytes)
        if raw is None:
            return _problem(413, f"request body over {limits.max_body_bytes:,} bytes")
        try:
            body = GenerateBody.model_validate_json(raw or b"{}")
        except ValidationError as err:
            return _problem(422, _validation_message(err))
        try:
            prepared = prepare(pre, Settings(**body.model_dump()), limits)
            events = prepared.events(pre.model)  # checks prompt + length against the context
        except UserError as err:
            return _problem(422, str(err))
        channel = FrameChannel(asyncio.get_running_loop(), limits.stall_seconds)
        try:
            generation = slots.start(pre, prepared, events, channel.put)
        except Busy:
            return _problem(429, f"all {slots.capacity} generation slots are busy; try again "
                                 "when one finishes", **{"retry-after": "1"})
        return EventStream(generation, channel)

    return app
