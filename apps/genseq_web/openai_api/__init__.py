"""An OpenAI-compatible HTTP API beside the web app: /v1/models, /v1/completions and /v1/chat/completions.

Existing OpenAI clients and SDKs work unchanged against `genseq serve`: the
routes share the web app's models, checkpoints, prompt limit and queue sizes
(server.py), take the task's options the API lacks as extra body fields
(bodies.py) and answer in OpenAI's shapes (responses.py, errors.py). These are
not chat models: a chat request continues its messages' texts, joined by
newlines, as plain text. docs/api.md has the details.
"""

from .routes import api_app, api_routes, serve_api
from .server import OpenAIServer

__all__ = ["OpenAIServer", "api_app", "api_routes", "serve_api"]
