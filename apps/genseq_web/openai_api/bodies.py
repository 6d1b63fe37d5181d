"""The request bodies of the OpenAI API as genseq reads them, and their mapping onto a task's options.

The fields of OpenAI's API that genseq's engine has map onto the task's options
(max_tokens -> max_new_tokens, n -> num_return_sequences, best_of -> num_beams);
the task's own options that the API lacks (top_k, min_p, repetition_penalty ...)
are extra fields of the body under their option names. A field the API defines
but genseq cannot honour (a suffix, a frequency penalty) is refused, not ignored,
so a client never gets text made under settings it did not ask for.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ApiError

MAX_CHOICES = 64  # n and best_of: the engine's num_return_sequences and num_beams stop at 64 too
# OpenAI field -> the engine option it sets
OPTION_OF_FIELD = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens", "temperature": "temperature",
                   "top_p": "top_p", "n": "num_return_sequences", "stop": "stop", "seed": "seed", "best_of": "num_beams"}


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """What both endpoints share: the model, how much to generate and how to sample it."""

    model_config = ConfigDict(extra="allow")  # a task option the API lacks, by its option name

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None  # identifies the end user to OpenAI; nothing here keeps it

    def refuse_unsupported(self) -> None:
        if self.presence_penalty or self.frequency_penalty:
            field = "presence_penalty" if self.presence_penalty else "frequency_penalty"
            raise ApiError(400, f"{field} is not supported by genseq; send repetition_penalty (above 1 makes tokens "
                                "already seen less likely) or no_repeat_ngram instead", field)
        if self.stream and self.wants_logprobs:
            raise ApiError(400, "logprobs cannot be streamed here; ask for them without stream", "logprobs")
        if self.logit_bias:
            raise ApiError(400, "logit_bias is not supported by genseq; send banned_ids (token ids never generated) "
                                "instead", "logit_bias")

    def api_options(self) -> dict:
        """The task options the OpenAI fields the client sent stand for."""
        given = self.model_fields_set & type(self).model_fields.keys()  # an extra field of the same name is an option's
        sent = {field: getattr(self, field) for field in OPTION_OF_FIELD if field in given}
        sent = {field: value for field, value in sent.items() if value is not None}
        if isinstance(sent.get("stop"), str):
            sent["stop"] = [sent["stop"]]
        return sent

    def texts(self) -> list[str]:
        """The texts to continue, one result each."""
        raise NotImplementedError

    def text_name(self, input_name: str) -> str:
        """How a message names the text the client sent, given the name of the task's text input."""
        return input_name

    @property
    def wants_logprobs(self) -> bool:
        """Whether the client asked for the generated tokens' log-probabilities (top_logprobs: how many alternatives)."""
        raise NotImplementedError

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionBody(Sampling):
    """POST /v1/completions."""

    prompt: str | Annotated[list[str], Field(min_length=1)] = ""
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.suffix:
            raise ApiError(400, "suffix is not supported: genseq's models continue text left to right and cannot "
                                "fill in before a suffix", "suffix")
        if self.best_of is not None and self.best_of < self.n:
            raise ApiError(400, f"best_of ({self.best_of}) must be at least n ({self.n})", "best_of")
        if self.stream and (self.best_of or 1) > 1:
            raise ApiError(400, "best_of cannot be streamed: beam search chooses its text only at the end", "best_of")

    def texts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs is not None

    @property
    def top_logprobs(self) -> int | None:
        return self.logprobs


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatBody(Sampling):
    """POST /v1/chat/completions: the messages' texts, joined by newlines, are the text to continue."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=5)
    echo: ClassVar[bool] = False  # chat has no echo: a reply never repeats the conversation

    def texts(self) -> list[str]:
        return ["\n".join(message.text() for message in self.messages)]

    def text_name(self, input_name: str) -> str:
        return "the messages"

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs

    def api_options(self) -> dict:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ApiError(400, "send max_tokens or max_completion_tokens, not both", "max_completion_tokens")
        return super().api_options()

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.top_logprobs and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")


def read_body(kind: type[Sampling], raw) -> Sampling:
    """The body, validated; a field of the wrong type or out of range is a 400 naming the field."""
    if not isinstance(raw, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        body = kind.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(400, f"{where or 'the body'}: {first['msg']}", where or None) from None
    body.refuse_unsupported()
    return body
