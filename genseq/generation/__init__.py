"""The generation engine: sampling strategies, beam search, streaming and fast batched decoding.

    logits -> processors (processors.py) -> next_token (sampling.py) or beam search (beam.py)
           -> token ids (engine.py) -> text, stop strings, streams (text.py)

The engine works on token ids and tensors; text enters and leaves through the
tokenizer in text.py only.
"""

from .beam import beam_search
from .config import MAX_NEW_TOKENS, PRECISIONS, GenerationConfig
from .engine import GeneratedSequence, Step, encode_prompts, generate_ids, sample_steps
from .precision import decoding_step
from .processors import (
    BannedTokens,
    LogitsProcessor,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    TypicalP,
    apply_processors,
    build_processors,
)
from .sampling import next_token
from .text import Completion, IncrementalDecoder, TextStream, completion, generate, stream

__all__ = [
    "BannedTokens",
    "Completion",
    "GeneratedSequence",
    "GenerationConfig",
    "IncrementalDecoder",
    "LogitsProcessor",
    "MAX_NEW_TOKENS",
    "MinNewTokens",
    "MinP",
    "NoRepeatNGram",
    "PRECISIONS",
    "RepetitionPenalty",
    "Step",
    "Temperature",
    "TextStream",
    "TopK",
    "TopP",
    "TypicalP",
    "apply_processors",
    "beam_search",
    "build_processors",
    "completion",
    "decoding_step",
    "encode_prompts",
    "generate",
    "generate_ids",
    "next_token",
    "sample_steps",
    "stream",
]
