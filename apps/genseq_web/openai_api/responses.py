"""The response objects of the two endpoints, whole and streamed, in OpenAI's shapes.

/v1/completions answers "text_completion" objects whose choices carry text;
/v1/chat/completions answers "chat.completion" objects whose choices carry an
assistant message, and streams "chat.completion.chunk" deltas. Both share the
choices' order (prompt by prompt, n choices each), finish reasons and usage.
"""

from __future__ import annotations

import time
import uuid

from .scoring import TokenScore

# genseq's finish reasons -> OpenAI's: the end of text and a stop string are "stop", a limit is "length"
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "time": "length"}


def finish_reason(reason: str | None) -> str:
    return FINISH_REASONS.get(reason or "", "stop")


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class TextShape:
    """/v1/completions: choices hold text; logprobs is OpenAI's legacy table of tokens and their log-probabilities."""

    prefix, whole, chunk = "cmpl", "text_completion", "text_completion"

    def __init__(self, model: str):
        self.model, self.id, self.created = model, f"{self.prefix}-{uuid.uuid4().hex}", int(time.time())

    def response(self, choices: list[dict], counts: dict | None, streamed: bool = False) -> dict:
        answer = {"id": self.id, "object": self.chunk if streamed else self.whole, "created": self.created,
                  "model": self.model, "choices": choices}
        return answer if counts is None else {**answer, "usage": counts}

    def choice(self, index: int, text: str, reason: str | None, scores: list[TokenScore] | None = None,
               start: int = 0) -> dict:
        """A choice; start: where in text the scored tokens begin (after an echoed prompt)."""
        return {"index": index, "text": text, "finish_reason": reason, "logprobs": self.logprobs(scores, start)}

    def delta(self, index: int, text: str, first: bool) -> dict:
        return self.choice(index, text, None)

    def end(self, index: int, reason: str) -> dict:
        return self.choice(index, "", reason)

    @staticmethod
    def logprobs(scores: list[TokenScore] | None, start: int = 0) -> dict | None:
        if scores is None:
            return None
        offsets, at = [], start
        for score in scores:
            offsets.append(at)
            at += len(score.token)
        return {"tokens": [score.token for score in scores], "token_logprobs": [score.logprob for score in scores],
                "top_logprobs": [dict(score.top) for score in scores], "text_offset": offsets}


class ChatShape(TextShape):
    """/v1/chat/completions: choices hold an assistant message; logprobs is {"content": [per token]}."""

    prefix, whole, chunk = "chatcmpl", "chat.completion", "chat.completion.chunk"

    def choice(self, index: int, text: str, reason: str | None, scores: list[TokenScore] | None = None,
               start: int = 0) -> dict:
        return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                "logprobs": self.logprobs(scores)}

    def delta(self, index: int, text: str, first: bool) -> dict:
        content = {"role": "assistant", "content": text} if first else {"content": text}
        return {"index": index, "delta": content, "finish_reason": None, "logprobs": None}

    def end(self, index: int, reason: str) -> dict:
        return {"index": index, "delta": {}, "finish_reason": reason, "logprobs": None}

    @staticmethod
    def logprobs(scores: list[TokenScore] | None) -> dict | None:
        if scores is None:
            return None
        return {"content": [{**_entry(score.token, score.logprob),
                             "top_logprobs": [_entry(token, logprob) for token, logprob in score.top]}
                            for score in scores]}


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}
