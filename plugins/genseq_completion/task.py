"""The `completion` task: continue a prompt with a genseq language model, or suggest the next word.

Every option of the generation engine is an option of the task; `suggest`
switches from continuing the prompt to ranking the next whole word.
"""

from __future__ import annotations

import secrets
import time
import warnings

from genseq.generation.config import MAX_NEW_TOKENS  # the engine's cap; larger requests are capped with a warning
from genseq.tasks import Input, Option, Output, Task


class CompletionTask(Task):
    name = "completion"
    description = "Continue a prompt with the language model, or suggest the most likely next words."
    inputs = (Input("prompt", "text", "the text to continue; empty starts a new document"),)
    echo_input = "prompt"
    outputs = (
        Output("text", "text", "the continuation (the best one)"),
        Output("suggestions", "ranked", "the most likely next words (with suggest)"),
        Output("completions", "json", "every continuation with its tokens, log-probability and finish reason"),
    )
    options = (
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
        Option("seed", None, "seed of the sampling; none draws a fresh one (reported in the JSON)", type=int,
               minimum=0),
        Option("precision", "fp32", "of the decoding step; bf16 and int8 are faster", choices=("fp32", "bf16", "int8")),
        Option("suggest", 0, "instead of continuing, list this many most likely next words", minimum=0, maximum=100),
    )

    def load(self, model_path):
        from genseq import default_model_dir, from_pretrained

        self.model_name = str(model_path or default_model_dir())
        return from_pretrained(self.model_name, device=self.device)

    def predict(self, loaded, batch, options):
        model, tokenizer = loaded
        if options["suggest"]:
            return [self._suggest(model, tokenizer, item["prompt"], options["suggest"]) for item in batch]
        from genseq.generation import generate

        config, seed = self._config(options)
        start = time.perf_counter()
        per_prompt = generate(model, tokenizer, [_without_trailing_space(item["prompt"]) for item in batch], config)
        seconds = time.perf_counter() - start
        for item, completions in zip(batch, per_prompt):
            for completion in completions:
                completion.text = _after(item["prompt"], completion.text)
        return [self._result(item["prompt"], completions, seed, seconds) for item, completions in zip(batch, per_prompt)]

    def predict_stream(self, loaded, inputs, options):
        if options["suggest"] or options["num_beams"] > 1 or options["num_return_sequences"] > 1:
            yield from super().predict_stream(loaded, inputs, options)
            return
        from genseq.generation import stream

        model, tokenizer = loaded
        config, seed = self._config(options)
        start = time.perf_counter()
        prompt = inputs["prompt"]
        deltas, text = stream(model, tokenizer, _without_trailing_space(prompt), config), ""
        for delta in deltas:
            text = _after(prompt, text + delta)
            yield {"text": text}
        deltas.completion.text = _after(prompt, deltas.completion.text)
        yield self._result(prompt, [deltas.completion], seed, time.perf_counter() - start)

    def to_json(self, batch, results):
        if results and "suggestions" in results[0]:
            suggestions = [[{"word": s["label"], "prob": s["prob"]} for s in r["suggestions"]] for r in results]
            return suggestions[0] if len(results) == 1 else suggestions
        documents = [
            {"prompt": item["prompt"], "model": self.model_name, "seed": r["seed"], "completions": r["completions"],
             "seconds": r["seconds"]}
            for item, r in zip(batch, results)
        ]
        return documents[0] if len(documents) == 1 else documents

    # ---- helpers -------------------------------------------------------------------
    def _config(self, options):
        from genseq.generation import GenerationConfig

        engine = dict(options)
        engine.pop("suggest")
        engine["no_repeat_ngram_size"] = engine.pop("no_repeat_ngram")
        engine["banned_token_ids"] = _token_ids(engine.pop("banned_ids"))
        if engine["max_new_tokens"] > MAX_NEW_TOKENS:
            warnings.warn(f"max_new_tokens {engine['max_new_tokens']} is capped at {MAX_NEW_TOKENS}", stacklevel=2)
            engine["max_new_tokens"] = MAX_NEW_TOKENS
        engine["min_new_tokens"] = min(engine["min_new_tokens"], engine["max_new_tokens"])
        engine["seed"] = secrets.randbits(31) if engine["seed"] is None else engine["seed"]
        return GenerationConfig(**engine), engine["seed"]

    @staticmethod
    def _result(prompt, completions, seed, seconds):
        return {
            "text": completions[0].text,
            "completions": [c.to_dict() for c in completions],
            "seed": seed,
            "seconds": round(seconds, 4),
        }

    @staticmethod
    def _suggest(model, tokenizer, prompt, k):
        from .suggest import next_words

        return {"suggestions": [{"label": s["word"], "prob": s["prob"]} for s in next_words(model, tokenizer, prompt, k)]}


def _token_ids(values) -> tuple[int, ...]:
    from genseq import ConfigError

    try:
        return tuple(int(value) for value in values)
    except (TypeError, ValueError):
        raise ConfigError(f"option banned_ids must hold token ids (integers), not {list(values)!r}") from None


def _without_trailing_space(prompt: str) -> str:
    """A trailing space would be encoded as a bare word-start piece, after which the model
    spells a word out of fragments; the model starts the next word with its own space instead."""
    return prompt.rstrip(" ")


def _after(prompt: str, text: str) -> str:
    """The continuation as it follows the prompt as typed: no second space after a trailing one."""
    return text[1:] if prompt.endswith(" ") and text.startswith(" ") else text
