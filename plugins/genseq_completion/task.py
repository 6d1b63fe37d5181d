"""The `completion` task: continue a prompt with a genseq language model, or suggest the next word.

Every option of the generation engine is an option of the task; `suggest`
switches from continuing the prompt to ranking the next whole word.
"""

from __future__ import annotations

import time

from genseq.errors import ConfigError
from genseq.tasks import (Action, Example, Input, Option, Output, Task, TextTraining, generation_config,
                          generation_options)


class CompletionTask(Task):
    name = "completion"
    description = ("Type the start of a text and the language model writes what might come next, or suggests the "
                   "next word.")
    commands = ".commands"  # `genseq train completion` and `genseq eval completion`: its language model
    inputs = (Input("prompt", "text", "the text to continue; empty starts a new document",
                    placeholder="Type the start of a text, or pick an example below"),)
    echo_input = "prompt"
    outputs = (
        Output("text", "text", "the continuation (the best one)", label="continuation"),
        Output("suggestions", "ranked", "the most likely next words (with suggest)"),
        Output("tokens", "table", "each token written, with the model's own probability of it (before temperature "
               "and top-p)", label="token probabilities"),
        Output("completions", "json", "every continuation with its tokens, log-probability and finish reason"),
    )
    options = (
        # README's samples: the text reads best a little cooler than the model's own distribution, without its
        # unlikeliest tail; beam search sets both aside while they stay at these defaults.
        *generation_options(temperature=0.7, top_p=0.9, primary=("max_new_tokens", "temperature", "top_p")),
        Option("suggest", 0, "instead of continuing, list this many most likely next words", minimum=0, maximum=100,
               advanced=True, app_default=5, label="words to suggest"),
        Option("token_probabilities", False, "list each token written with the model's probability of it",
               advanced=True, app_default=True, label="show token probabilities"),
        Option("style", "", "write in this style, one of the model's labels (genseq tasks --json lists the default "
               "model's); none by default", choices_from_model=True),
    )
    # The web tab's second button: the next words, in the chosen style; a click on one adds it to the prompt.
    actions = (Action("suggest", "Suggest next words", options=("suggest",), outputs=("suggestions",),
                      continues="prompt", shares=("style",)),)
    examples = (Example("A speech to Congress",
                        {"prompt": "Fellow-citizens of the Senate and of the House of Representatives:"}),
                Example("Shakespeare", {"prompt": "Shall I compare thee to a summer's day?"}),
                Example("Jane Austen", {"prompt": "It is a truth universally acknowledged"}),
                Example("Moby-Dick", {"prompt": "Call me Ishmael."}))
    model_kinds = ("lm",)
    # The web app's Train tab: fine-tune the default model (the fine-tuning defaults of `genseq train --init`), or
    # train a small model from scratch. From scratch, in 1 to 30 minutes of a laptop CPU on a few pages to a few
    # books: one piece per character, as a word-piece vocabulary needs more text than that to learn (and refuses a
    # small corpus); one layer of 256 units, 3.6 steps a second on one thread of a busy two-core machine
    # (benchmarks/bench_train_threads.py), so a budget of minutes is hundreds to thousands of steps; dropout against over-fitting a small text; a validation every 50 steps, so that a Stop
    # soon finds a model saved and early stopping ends a run that only over-fits; and epochs that never end a run
    # before its budget.
    text_training = TextTraining(
        starts={"the default model": ("--init", "default"), "from scratch": ()},  # the budget rule chooses the rest
        options=(Option("lr", None, "learning rate; empty: 5e-4 from the default model, chosen for the model's size "
                        "from scratch", type=float,
                        minimum=0.0, exclusive_minimum=True, label="learning rate"),
                 Option("batch_size", None, "texts side by side in a step; empty: 32", type=int, minimum=1,
                        app_maximum=256, label="batch size"),
                 Option("bptt", None, "tokens per step of each text; empty: 64", type=int, minimum=1, app_maximum=512),
                 Option("seed", 0, "the same seed, texts and settings train the same model", type=int, minimum=0)),
        samples=tuple({"prompt": "", "max_new_tokens": 120, "seed": seed} for seed in range(3)),
    )

    @classmethod
    def default_model_dir(cls):
        from genseq import default_model_dir

        return str(default_model_dir())

    @classmethod
    def choices_from_model(cls, option, directory):
        from genseq.checkpoint_config import read_labels  # config.json's copy of the tokenizer's styles: no torch

        return tuple(read_labels(directory)) if option == "style" else ()

    def load(self, model_path):
        from genseq import default_model_dir, from_pretrained

        self.model_name = str(model_path or default_model_dir())
        return from_pretrained(self.model_name, device=self.device)

    def predict(self, loaded, batch, options):
        model, tokenizer = loaded
        if options["suggest"]:
            return [self._suggest(model, tokenizer, item["prompt"], options["suggest"], options.get("style")) for item in batch]
        from genseq.generation import generate

        config, seed = generation_config(options)
        start = time.perf_counter()
        per_prompt = generate(model, tokenizer, [_without_trailing_space(item["prompt"]) for item in batch], config,
                              style=options.get("style"))
        seconds = time.perf_counter() - start
        for item, completions in zip(batch, per_prompt):
            for completion in completions:
                completion.text = _after(item["prompt"], completion.text)
        return [self._result(item["prompt"], completions, seed, seconds,
                             self._tokens(model, tokenizer, item["prompt"], options, completions[0]))
                for item, completions in zip(batch, per_prompt)]

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
        deltas, text = stream(model, tokenizer, _without_trailing_space(prompt), config, style=options.get("style")), ""
        for delta in deltas:
            text = _after(prompt, text + delta)
            yield {"text": text}
        deltas.completion.text = _after(prompt, deltas.completion.text)
        seconds = time.perf_counter() - start
        table = self._tokens(model, tokenizer, prompt, options, deltas.completion)
        yield self._result(prompt, [deltas.completion], seed, seconds, table)

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
    def _result(prompt, completions, seed, seconds, tokens):
        return {
            "text": completions[0].text,
            "tokens": tokens,
            "notice": FINISHED.get(completions[0].finish_reason, f"Finished: {completions[0].finish_reason}"),
            "completions": [c.to_dict() for c in completions],
            "seed": seed,
            "seconds": round(seconds, 4),
        }

    @staticmethod
    def _tokens(model, tokenizer, prompt, options, completion):
        if not options.get("token_probabilities"):
            return None
        return _token_table(model, tokenizer, prompt, options.get("style"), completion)

    @staticmethod
    def _suggest(model, tokenizer, prompt, k, style):
        from .suggest import next_words

        return {"suggestions": [{"label": s["word"], "prob": s["prob"]}
                                for s in next_words(model, tokenizer, prompt, k, style)]}


# A finished text's notice in the web app, by the engine's finish reason
FINISHED = {"eos": "Finished: end of text (the model ended it)", "length": "Finished: length (max new tokens reached)",
            "stop": "Finished: stop (a stop string was written)", "time": "Finished: time limit reached"}


def _token_table(model, tokenizer, prompt: str, style: str | None, completion) -> list[dict]:
    """Each token of the completion as text, with the model's own probability of it after the prompt."""
    import torch

    from genseq.generation import continuation_logprobs

    written = completion.tokens
    logprobs = continuation_logprobs(model, tokenizer, _without_trailing_space(prompt), written, style)  # (N, V)
    probabilities = logprobs.gather(1, torch.tensor(written, device=logprobs.device)[:, None])[:, 0].exp()  # (N,)
    return [{"token": _shown_piece(tokenizer, token), "probability": round(probability, 4)}
            for token, probability in zip(written, probabilities.tolist())]


def _shown_piece(tokenizer, token: int) -> str:
    if token == tokenizer.eos_id:
        return "(end of text)"
    piece = tokenizer.id_to_piece(token)
    return piece.replace("\u2581", " ").strip() or piece  # "▁the": "the", a word start


def _without_trailing_space(prompt: str) -> str:
    """A trailing space would be encoded as a bare word-start piece, after which the model
    spells a word out of fragments; the model starts the next word with its own space instead."""
    return prompt.rstrip(" ")


def _after(prompt: str, text: str) -> str:
    """The continuation as it follows the prompt as typed: no second space after a trailing one."""
    return text[1:] if prompt.endswith(" ") and text.startswith(" ") else text
