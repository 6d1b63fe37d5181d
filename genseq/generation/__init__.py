"""The generation engine: sampling strategies, beam search, streaming and fast batched decoding.

    prompts -> prefill (prefill.py) -> logits -> processors (processors.py)
            -> next_token (sampling.py) or beam search (beam.py) -> token ids (engine.py)
            -> text, stop strings, streams (text.py)

The engine works on token ids and tensors, and on any model that provides
protocol.DecodableModel; text enters and leaves through the tokenizer in
text.py only. The names below are imported on first use, so importing the
package or its config does not import torch. A task turns its options into
a GenerationConfig with genseq.tasks.generation_options and generation_config.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from .config import MAX_NEW_TOKENS, PRECISIONS, GenerationConfig  # noqa: F401 (in __all__)

_EXPORTS = {  # module -> the names it gives the package
    ".protocol": ("DecodableModel", "DecodingStep", "GeneratedSequence", "MakeLinear", "State", "Step", "StopHook"),
    ".engine": ("generate_ids",),
    ".prefill": ("encode_prompts",),
    ".sampling": ("next_token", "sample_steps"),
    ".beam": ("beam_search",),
    ".precision": ("decoding_step",),
    ".processors": ("BannedTokens", "LogitsProcessor", "MinNewTokens", "MinP", "NoRepeatNGram", "RepetitionPenalty",
                    "Temperature", "TopK", "TopP", "TypicalP", "apply_processors", "build_processors"),
    ".text": ("Completion", "IncrementalDecoder", "TextStream", "completion", "continuation_logprobs", "generate",
              "stream"),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(["GenerationConfig", "MAX_NEW_TOKENS", "PRECISIONS", *_LAZY])

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
