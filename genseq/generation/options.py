"""The engine's options as task options, and back: one declaration for every generative task.

A task lists generation_options() among its options (overriding defaults or
leaving some out) and turns the checked values into a GenerationConfig with
generation_config(), so every task offers the same names, bounds and checks.
"""

from __future__ import annotations

import secrets
import warnings

from ..errors import ConfigError
from ..tasks import Option
from .config import MAX_NEW_TOKENS, PRECISIONS, GenerationConfig

_OPTIONS = (
    Option("max_new_tokens", 100, "tokens to generate at most", minimum=1),
    Option("temperature", 1.0, "sampling temperature; 0 is greedy", minimum=0.0),
    Option("top_k", 0, "keep the k most likely tokens; 0 keeps all", minimum=0),
    Option("top_p", 1.0, "keep the most likely tokens holding this probability", minimum=0.0, maximum=1.0,
           exclusive_minimum=True),
    Option("min_p", 0.0, "drop tokens less likely than this times the best one", minimum=0.0, maximum=1.0),
    Option("typical_p", 1.0, "locally typical sampling mass", minimum=0.0, maximum=1.0, exclusive_minimum=True),
    Option("repetition_penalty", 1.0, "above 1 makes tokens already seen less likely", minimum=0.0,
           exclusive_minimum=True),
    Option("no_repeat_ngram", 0, "never repeat an n-gram of this many tokens; 0 allows all", minimum=0),
    Option("min_new_tokens", 0, "the end of text is masked until this many tokens", minimum=0),
    Option("num_beams", 1, "beam search with this many beams; 1 samples", minimum=1, maximum=64),
    Option("length_penalty", 1.0, "beams are ranked by log-probability / length ** this"),
    Option("num_return_sequences", 1, "continuations to return", minimum=1, maximum=64),
    Option("stop", (), "stop when the text contains one of these strings (left out of it)", type=tuple),
    Option("banned_ids", (), "token ids never generated", type=tuple),
    Option("max_time", None, "stop after this many seconds", type=float, minimum=0.0, exclusive_minimum=True),
    Option("seed", None, "seed of the sampling; none draws a fresh one (reported in the JSON)", type=int, minimum=0,
           maximum=2**63 - 1),
    Option("precision", "fp32", "of the decoding step; auto: the faster of fp32 and bf16 here, measured; "
           "int8: fastest on most CPUs, +0.3% perplexity", choices=PRECISIONS),
)
# task option name -> GenerationConfig field, where they differ
_FIELDS = {"no_repeat_ngram": "no_repeat_ngram_size", "banned_ids": "banned_token_ids"}


def generation_options(without: tuple[str, ...] = (), **defaults) -> tuple[Option, ...]:
    """The engine's options, less those named in without, with defaults overridden by keyword."""
    unknown = (set(without) | set(defaults)) - {option.name for option in _OPTIONS}
    if unknown:
        raise ValueError(f"no generation option {', '.join(sorted(unknown))}")
    return tuple(
        Option(**{**vars(option), "default": defaults.get(option.name, option.default)})
        for option in _OPTIONS
        if option.name not in without
    )


def generation_config(options: dict) -> tuple[GenerationConfig, int]:
    """The GenerationConfig of checked task options (others are ignored) and its seed.

    max_new_tokens above the engine's cap is capped with a warning; without a
    seed a fresh one is drawn, so the run can be repeated.
    """
    engine = {_FIELDS.get(o.name, o.name): options[o.name] for o in _OPTIONS if o.name in options}
    if "banned_token_ids" in engine:
        engine["banned_token_ids"] = _token_ids(engine["banned_token_ids"])
    if engine.get("min_new_tokens", 0) > engine.get("max_new_tokens", MAX_NEW_TOKENS):
        raise ConfigError(f"option min_new_tokens ({engine['min_new_tokens']}) must not exceed max_new_tokens "
                          f"({engine['max_new_tokens']}); lower it or raise max_new_tokens")
    if engine.get("max_new_tokens", 0) > MAX_NEW_TOKENS:
        warnings.warn(f"max_new_tokens {engine['max_new_tokens']} is capped at {MAX_NEW_TOKENS}", stacklevel=3)
        engine["max_new_tokens"] = MAX_NEW_TOKENS
        engine["min_new_tokens"] = min(engine.get("min_new_tokens", 0), MAX_NEW_TOKENS)  # within the cap, as asked
    if engine.get("seed") is None:
        engine["seed"] = secrets.randbits(31)
    return GenerationConfig(**engine), engine["seed"]


def _token_ids(values) -> tuple[int, ...]:
    try:
        return tuple(int(value) for value in values)
    except (TypeError, ValueError):
        raise ConfigError(f"option banned_ids must hold token ids (integers), not {list(values)!r}") from None
