"""The HTTP side: /v1/models, /v1/completions and /v1/chat/completions as FastAPI routes, and the API key.

The routes go first on the FastAPI app that serves the web page (see launch in
app.py), or alone on one of their own (--api-only). With an API key, every
request must carry `Authorization: Bearer KEY`, compared in constant time.
Streams are server-sent events: one `data: {json}` per chunk, then `data: [DONE]`.
"""

from __future__ import annotations

import functools
import hmac
import json
import socket

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute

from ..handlers import unexpected_error
from .bodies import ChatBody, CompletionBody, read_body
from .errors import ApiError
from .responses import ChatShape, TextShape
from .server import OpenAIServer

PREFIX = "/v1"


def api_routes(server: OpenAIServer, api_key: str | None = None) -> list[BaseRoute]:
    """The API's routes on server, refusing requests without api_key when one is given."""
    router = APIRouter(prefix=PREFIX)
    answered = functools.partial(_answered, api_key)

    @router.get("/models")
    @answered
    async def list_models(request: Request):
        return {"object": "list", "data": [model.card() for model in server.models()]}

    @router.get("/models/{name:path}")
    @answered
    async def get_model(request: Request, name: str):
        return server.find(name).card()

    @router.post("/completions")
    @answered
    async def completions(request: Request):
        return await _generate(server, await _body(request, CompletionBody), TextShape)

    @router.post("/chat/completions")
    @answered
    async def chat_completions(request: Request):
        return await _generate(server, await _body(request, ChatBody), ChatShape)

    return router.routes


def api_app(server: OpenAIServer, api_key: str | None = None) -> FastAPI:
    """A FastAPI app serving the API alone (`genseq serve --api-only`)."""
    return FastAPI(title="genseq", routes=api_routes(server, api_key), docs_url=None, redoc_url=None, openapi_url=None)


def serve_api(server: OpenAIServer, host: str, port: int, api_key: str | None = None) -> None:
    """Serve the API alone on host:port until interrupted; OSError when the address cannot be bound."""
    import uvicorn

    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)  # here rather than in uvicorn, which would exit the process on a taken port
    print(f"Serving the OpenAI-compatible API on http://{host}:{port}{PREFIX} (Ctrl+C stops it)", flush=True)
    config = uvicorn.Config(api_app(server, api_key), log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])


def _answered(api_key: str | None, endpoint):
    """endpoint behind the key check, with every ApiError (and anything unforeseen) answered in OpenAI's shape."""

    @functools.wraps(endpoint)
    async def guarded(request: Request, **kwargs):
        try:
            _check_key(api_key, request.headers.get("authorization", ""))
            answer = await endpoint(request, **kwargs)
        except ApiError as error:
            return error.response()
        except Exception as error:  # the app's own code on a request it did not expect: one sentence, logged
            return ApiError(500, unexpected_error(f"{request.url.path}", error).message).response()
        return answer if isinstance(answer, StreamingResponse) else JSONResponse(answer)

    return guarded


def _check_key(api_key: str | None, header: str) -> None:
    if api_key is None:
        return
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        raise ApiError(401, "this server needs its API key: send the header 'Authorization: Bearer KEY' with the "
                            "key it was started with")


async def _body(request: Request, kind):
    try:
        raw = await request.json()
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None
    return read_body(kind, raw)


async def _generate(server: OpenAIServer, body, shape_class) -> dict | StreamingResponse:
    job = server.prepare(body)
    shape = shape_class(body.model)
    if not body.stream:
        return await server.complete(job, shape)
    server.limiter.refuse_when_full()  # before the response starts, so that a full queue is a 429, not a broken stream
    return StreamingResponse(_events(server.stream(job, shape)), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(chunks):
    """Server-sent events of chunks; an error midway is one last event in OpenAI's error shape."""
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except ApiError as error:
        yield f"data: {json.dumps(error.body())}\n\n"
        return
    except Exception as error:  # as in _answered: the client gets one sentence, the log the traceback
        yield f"data: {json.dumps(ApiError(500, unexpected_error('the stream', error).message).body())}\n\n"
        return
    yield "data: [DONE]\n\n"
