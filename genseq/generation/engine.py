"""The engine's entry point on token ids: sampling (sampling.py) or beam search (beam.py), as the config asks.

    prompts --prefill.py--> logits, state --sampling.py / beam.py--> GeneratedSequence per continuation

The engine sees token ids and tensors only, and of the model only what
protocol.DecodableModel lists; LanguageModel is one.
"""

from __future__ import annotations

from .beam import beam_search
from .config import GenerationConfig
from .protocol import DecodableModel, GeneratedSequence, StopHook
from .sampling import collect, sample_steps


def generate_ids(
    model: DecodableModel, prompts: list[list[int]], config: GenerationConfig, eos_id: int,
    start_id: int | None = None, stop_hook: StopHook | None = None,
) -> list[list[GeneratedSequence]]:
    """For each prompt (token ids, may be empty), its num_return_sequences continuations.

    Each prompt is fed as [start_id] + prompt (start_id defaults to eos_id, the
    separator before every document in training). Beam search returns the best
    hypotheses first; sampling returns them in seed order.
    """
    if config.num_beams > 1:
        return beam_search(model, prompts, config, eos_id, start_id, stop_hook)
    return collect(sample_steps(model, prompts, config, eos_id, start_id, stop_hook), len(prompts), config)
