"""GenerationConfig: every generation option in one immutable dataclass, validated when built.

A bad value raises ConfigError (a ValueError) naming the option and its allowed
range; options that contradict each other (beam search with sampling-only
options) are rejected here, before any model runs. Only values the caller
chose can contradict: the fields named in `defaulted` hold someone else's
default (a task's), and those yield to beam search instead: a sampling-only
one is set to its neutral value, and num_return_sequences is lowered to
num_beams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import ConfigError

MAX_NEW_TOKENS = 10_000  # a cap, not a model limit: a recurrent model has none, but a run should end
PRECISIONS = ("fp32", "bf16", "int8", "auto")  # auto: the fastest of fp32 and bf16 on this machine, measured
# Options that only change how a token is drawn from a distribution; beam search draws nothing.
SAMPLING_ONLY = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0}


@dataclass(frozen=True)
class GenerationConfig:
    """How to continue a prompt. Neutral values (top_k 0, top_p 1, ...) turn an option off."""

    max_new_tokens: int = 100
    min_new_tokens: int = 0  # EOS is masked until this many tokens are generated
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    banned_token_ids: tuple[int, ...] = ()
    num_beams: int = 1
    length_penalty: float = 1.0  # beam scores are logprob / length ** length_penalty
    early_stopping: bool = True  # beam search ends once num_beams hypotheses are finished
    num_return_sequences: int = 1
    stop: tuple[str, ...] = ()  # stop strings, matched on the decoded text and left out of it
    max_time: float | None = None  # seconds
    seed: int | None = None  # None: a fresh random seed each call
    precision: str = "fp32"  # of the decoding step's matrix products: fp32, bf16, int8 or auto
    # Fields holding a default rather than the caller's choice: they yield to beam search instead of conflicting.
    defaulted: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "defaulted", frozenset(self.defaulted))
        _check_names(self.defaulted)
        object.__setattr__(self, "stop", _tuple_of("stop", self.stop, str))
        object.__setattr__(self, "banned_token_ids", _tuple_of("banned_token_ids", self.banned_token_ids, int))
        _integer("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS)
        _integer("min_new_tokens", self.min_new_tokens, 0, self.max_new_tokens, "max_new_tokens")
        _number("temperature", self.temperature, 0.0, None, "[0, inf)")
        _integer("top_k", self.top_k, 0, None)
        _number("top_p", self.top_p, 0.0, 1.0, "(0, 1]", open_low=True)
        _number("min_p", self.min_p, 0.0, 1.0, "[0, 1]")
        _number("typical_p", self.typical_p, 0.0, 1.0, "(0, 1]", open_low=True)
        _number("repetition_penalty", self.repetition_penalty, 0.0, None, "(0, inf)", open_low=True)
        _integer("no_repeat_ngram_size", self.no_repeat_ngram_size, 0, None)
        for token in self.banned_token_ids:
            _integer("banned_token_ids", token, 0, None)
        _integer("num_beams", self.num_beams, 1, None)
        _number("length_penalty", self.length_penalty, None, None, "any finite number")
        _integer("num_return_sequences", self.num_return_sequences, 1, None)
        if any(text == "" for text in self.stop):
            raise ConfigError("stop strings must not be empty (an empty string would stop before the first token)")
        if self.max_time is not None:
            _number("max_time", self.max_time, 0.0, None, "(0, inf) seconds, or None", open_low=True)
        if self.seed is not None:
            _integer("seed", self.seed, 0, 2**63 - 1)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.precision == "int8":
            _check_int8()
        if self.num_beams > 1:
            self._yield_defaults_to_beam_search()
            self._check_beam_search()

    def _yield_defaults_to_beam_search(self):
        for name in SAMPLING_ONLY.keys() & self.defaulted:
            object.__setattr__(self, name, SAMPLING_ONLY[name])
        if "num_return_sequences" in self.defaulted:
            object.__setattr__(self, "num_return_sequences", min(self.num_return_sequences, self.num_beams))

    def _check_beam_search(self):
        changed = [name for name, neutral in SAMPLING_ONLY.items() if getattr(self, name) != neutral]
        if changed:
            raise ConfigError(
                f"the sampling-only options {', '.join(changed)} cannot be combined with beam search "
                f"(num_beams={self.num_beams}), which is deterministic; drop them or set num_beams to 1"
            )
        if self.num_return_sequences > self.num_beams:
            raise ConfigError(
                f"num_return_sequences must be between 1 and num_beams ({self.num_beams}) in beam search, "
                f"not {self.num_return_sequences}"
            )

    @property
    def do_sample(self) -> bool:
        """True when tokens are drawn at random; False for greedy decoding and beam search."""
        return self.num_beams == 1 and self.temperature > 0

    def updated(self, **options: Any) -> "GenerationConfig":
        """A copy with options changed, which become the caller's choices; an unknown option name is a
        ConfigError listing the known ones."""
        _check_names(set(options) - {"defaulted"})
        options.setdefault("defaulted", self.defaulted - set(options))
        return replace(self, **options)


def _check_names(names) -> None:
    known = sorted(field.name for field in fields(GenerationConfig) if field.name != "defaulted")
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"unknown generation option {unknown[0]!r}; known options: {', '.join(known)}")


def _check_int8() -> None:
    """int8 decoding needs fbgemm, which some PyTorch builds lack: refused before any model runs."""
    from .. import capabilities

    if not capabilities.int8_decoding():
        raise ConfigError("precision int8 needs PyTorch's fbgemm int8 kernels, which this build lacks; "
                          "use --precision fp32, bf16 or auto")


def _tuple_of(name: str, values, kind: type) -> tuple:
    if isinstance(values, (str, int)):  # a single stop string or banned id, not an iterable of them
        values = (values,)
    values = tuple(values)
    for value in values:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{name} must hold {kind.__name__} values, not {value!r}")
    return values


def _integer(name: str, value, low: int, high: int | None, high_name: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        upper = f"{high_name} ({high})" if high_name else ("inf" if high is None else str(high))
        raise ConfigError(f"{name} must be between {low} and {upper}, not {value}")


def _number(name: str, value, low: float | None, high: float | None, allowed: str, open_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number in {allowed}, not {value!r}")
    too_low = low is not None and (value <= low if open_low else value < low)
    if too_low or (high is not None and value > high):
        raise ConfigError(f"{name} must be in {allowed}, not {value}")
