"""The `wordgen` task: the first letters of a word in; the rest of an invented word and the likeliest next letters out.

The declaration below is all that the command line and the web app need: each
input and option becomes a flag and a control, each output a printed line and
a component. torch is imported inside the methods, so that listing tasks stays
fast.
"""

from __future__ import annotations

from typing import Iterator

from genseq.tasks import Example, Input, Option, Output, Task


class WordgenTask(Task):
    api_version = "1.0"  # the genseq.tasks.API_VERSION this task is written for
    name = "wordgen"  # the entry point's name in pyproject.toml
    description = "Invent a word that starts with the given letters, in the style of the words the model learnt."
    inputs = (Input("prefix", "text", "the first letters of the word (may be empty)",
                    placeholder="Type a few letters, or pick an example below"),)
    outputs = (
        Output("word", "text", "the letters that complete the word"),
        Output("next_letters", "ranked", "the likeliest letters after the prefix"),
    )
    options = (
        Option("max_letters", 12, "at most this many letters are added", minimum=1, maximum=64,
               label="letters to add"),  # the web app's words for it, in its controls and its error messages
        Option("temperature", 1.0, "0 always takes the likeliest letter; higher is wilder", minimum=0.0, maximum=5.0,
               advanced=True),
        Option("seed", None, "random seed; none draws one", type=int, minimum=0, maximum=2**63 - 1, advanced=True),
    )
    echo_input = "prefix"  # `word` continues the prefix: the command line prints them as one word
    examples = (Example("th…", {"prefix": "th"}), Example("qu…", {"prefix": "qu"}),
                Example("any word", {"prefix": ""}))  # each a named button under the input
    model_kinds = ("wordgen",)  # the checkpoints the web app's model box offers this task
    commands = ".commands"  # genseq train wordgen / genseq eval wordgen, imported only by those commands

    @classmethod
    def default_model_dir(cls):
        """The checkpoint load(None) reads: the web app shows its model card (card.json beside config.json)."""
        from .model import default_model_dir

        return str(default_model_dir())

    def load(self, model_path):
        from .model import load_word_model

        return load_word_model(model_path, device=self.device)

    def predict(self, model, batch, options):
        return [list(self.predict_stream(model, item, options))[-1] for item in batch]  # each stream's final result

    def predict_stream(self, model, inputs, options) -> Iterator[dict]:
        import torch

        from .model import continuations, likeliest_next

        prefix = inputs["prefix"].strip().lower()
        if any(character.isspace() for character in prefix):  # this item's mistake: the rest of a batch still runs
            yield {"error": f"the prefix {prefix!r} is more than one word; give the first letters of one word"}
            return
        word_model, tokenizer = model
        generator = torch.Generator()
        if options["seed"] is None:
            generator.seed()
        else:
            generator.manual_seed(options["seed"])
        result = {"word": "", "next_letters": likeliest_next(word_model, tokenizer, prefix)}
        yield result
        words = continuations(word_model, tokenizer, prefix, options["max_letters"], options["temperature"], generator)
        for word in words:
            result = {**result, "word": word}
            yield result
