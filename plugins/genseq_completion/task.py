"""The `completion` task: continue a prompt with a genseq language model, or suggest the next word.

Every option of the generation engine is an option of the task; `suggest`
switches from continuing the prompt to ranking the next whole word.
"""

from __future__ import annotations

import time

from genseq.errors import ConfigError
from genseq.tasks import Action, Input, Option, Output, Task, generation_config, generation_options


class CompletionTask(Task):
    name = "completion"
    description = "Continue a prompt with the language model, or suggest the most likely next words."
    commands = ".commands"  # `genseq train completion` and `genseq eval completion`: its language model
    inputs = (Input("prompt", "text", "the text to continue; empty starts a new document"),)
    echo_input = "prompt"
    outputs = (
        Output("text", "text", "the continuation (the best one)"),
        Output("suggestions", "ranked", "the most likely next words (with suggest)"),
        Output("completions", "json", "every continuation with its tokens, log-probability and finish reason"),
    )
    options = (
        # README's samples: the text reads best a little cooler than the model's own distribution, without its
        # unlikeliest tail; beam search sets both aside while they stay at these defaults.
        *generation_options(temperature=0.7, top_p=0.9),
        Option("suggest", 0, "instead of continuing, list this many most likely next words", minimum=0, maximum=100,
               advanced=True, app_default=5),
    )
    # The web tab's second button: the next words, a click on one adds it to the prompt.
    actions = (Action("suggest", "Suggest next words", options=("suggest",), outputs=("suggestions",),
                      continues="prompt"),)
    examples = ({"prompt": "Shall I compare thee to a summer's day?"}, {"prompt": "It is a truth universally acknowledged"},
                {"prompt": "Call me Ishmael."})
    model_kinds = ("lm",)

    def load(self, model_path):
        from genseq import default_model_dir, from_pretrained

        self.model_name = str(model_path or default_model_dir())
        return from_pretrained(self.model_name, device=self.device)

    def predict(self, loaded, batch, options):
        model, tokenizer = loaded
        if options["suggest"]:
            return [self._suggest(model, tokenizer, item["prompt"], options["suggest"]) for item in batch]
        from genseq.generation import generate

        config, seed = generation_config(options)
        start = time.perf_counter()
        per_prompt = generate(model, tokenizer, [_without_trailing_space(item["prompt"]) for item in batch], config)
        seconds = time.perf_counter() - start
        for item, completions in zip(batch, per_prompt):
            for completion in completions:
                completion.text = _after(item["prompt"], completion.text)
        return [self._result(item["prompt"], completions, seed, seconds) for item, completions in zip(batch, per_prompt)]

    @classmethod
    def check_options(cls, options):
        checked = super().check_options(options)
        for name in ("num_beams", "num_return_sequences"):
            if checked["suggest"] and checked[name] > 1:
                raise ConfigError(f"option suggest ranks the next words and ignores {name}; drop {name} ({checked[name]}) "
                                  "or suggest")
        return checked

    @classmethod
    def stream_refusal(cls, options):
        if options["num_beams"] > 1:
            return f"beam search (num_beams {options['num_beams']}) chooses its text only at the end"
        if options["num_return_sequences"] > 1:
            return f"it streams one sequence, not num_return_sequences {options['num_return_sequences']}"
        return None

    def predict_stream(self, loaded, inputs, options):
        if options["suggest"] or self.stream_refusal(options):  # suggestions come at once, after the prompt
            yield from super().predict_stream(loaded, inputs, options)
            return
        from genseq.generation import stream

        model, tokenizer = loaded
        config, seed = generation_config(options)
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


def _without_trailing_space(prompt: str) -> str:
    """A trailing space would be encoded as a bare word-start piece, after which the model
    spells a word out of fragments; the model starts the next word with its own space instead."""
    return prompt.rstrip(" ")


def _after(prompt: str, text: str) -> str:
    """The continuation as it follows the prompt as typed: no second space after a trailing one."""
    return text[1:] if prompt.endswith(" ") and text.startswith(" ") else text
