"""Errors in the shape OpenAI's API answers with: {"error": {"message", "type", "param", "code"}} and its status codes."""

from __future__ import annotations

from fastapi.responses import JSONResponse

# status -> (type, code) as OpenAI's API reports them
KINDS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
         404: ("invalid_request_error", "model_not_found"), 429: ("rate_limit_error", "rate_limit_exceeded"),
         500: ("server_error", None)}


class ApiError(Exception):
    """One sentence for the client, with the HTTP status and the request field it is about (param)."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def body(self) -> dict:
        kind, code = KINDS[self.status]
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)
