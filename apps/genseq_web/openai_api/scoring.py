"""Token counts and per-token log-probabilities for the API's usage and logprobs fields.

A task's model is opaque to the app; where it is a genseq language model and its
tokenizer (what an "lm" checkpoint loads as), the tokenizer counts the prompt's
tokens and the model scores each generated token: its log-probability under the
model's own distribution, before temperature or any other processor, as OpenAI
reports them. The sum over a continuation is the task's reported logprob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the first model, not with the app
    from genseq import LanguageModel, Tokenizer

WORD_START = "\u2581"  # SentencePiece's mark for a space before a piece


@dataclass(frozen=True)
class TokenScore:
    token: str
    logprob: float
    top: list[tuple[str, float]]  # the most likely tokens at this position, most likely first


def parts_of(loaded) -> tuple[LanguageModel | None, Tokenizer | None]:
    """The language model and the tokenizer among what a task loaded, None for what it does not hold."""
    from genseq import LanguageModel, Tokenizer

    parts = loaded if isinstance(loaded, (tuple, list)) else (loaded,)
    model = next((part for part in parts if isinstance(part, LanguageModel)), None)
    tokenizer = next((part for part in parts if isinstance(part, Tokenizer)), None)
    return model, tokenizer


def count_tokens(tokenizer: Tokenizer | None, text: str) -> int:
    return 0 if tokenizer is None else len(tokenizer.encode(text))


def piece(tokenizer: Tokenizer, token_id: int) -> str:
    return tokenizer.id_to_piece(token_id).replace(WORD_START, " ")


def score_tokens(model: LanguageModel, tokenizer: Tokenizer, prompt: str, tokens: list[int], top: int,
                 style: str | None = None) -> list[TokenScore]:
    """Each generated token's log-probability after the prompt, fed as the engine feeds it: after the start id
    and the style's control id."""
    if not tokens:
        return []
    import torch

    from genseq.generation import continuation_logprobs

    logprobs = continuation_logprobs(model, tokenizer, prompt, tokens, style)  # (N, V)
    chosen = logprobs.gather(1, torch.tensor(tokens, device=logprobs.device)[:, None])[:, 0].tolist()
    best = torch.topk(logprobs, k=top, dim=-1) if top else None
    return [TokenScore(piece(tokenizer, token), value, _top(tokenizer, best, row)) for row, (token, value)
            in enumerate(zip(tokens, chosen))]


def _top(tokenizer: Tokenizer, best, row: int) -> list[tuple[str, float]]:
    if best is None:
        return []
    return [(piece(tokenizer, token), value) for token, value in zip(best.indices[row].tolist(), best.values[row].tolist())]
