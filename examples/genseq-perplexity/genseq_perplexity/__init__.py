"""A genseq task plugin: how surprising is a text to a language model?

Scores a text with a genseq checkpoint (the embedded default one unless
--model says otherwise) and lists the tokens the model least expected.
"""

import math

import torch

from genseq import default_model_dir, from_pretrained
from genseq.tasks import Input, Option, Output, Task


class PerplexityTask(Task):
    name = "perplexity"
    description = "Score how predictable a text is and show its least expected words."
    inputs = (Input("text", "text", "the text to score"),)
    outputs = (
        Output("perplexity", "number", "perplexity per token"),
        Output("surprises", "ranked", "the least expected tokens and their probabilities"),
    )
    options = (Option("top", 5, "how many surprising tokens to list", minimum=1, maximum=50),)

    def load(self, model_path):
        return from_pretrained(model_path or default_model_dir(), device=self.device)

    def predict(self, loaded, batch, options):
        model, tokenizer = loaded
        return [score(model, tokenizer, item["text"], options["top"]) for item in batch]


@torch.no_grad()
def score(model, tokenizer, text, top):
    ids = torch.tensor([[tokenizer.eos_id, *tokenizer.encode(text)]])  # the EOS gives the first token a context
    logits, _ = model(ids[:, :-1])
    log_probs = logits[0].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]  # (T,)
    pieces = [tokenizer.decode([token]) for token in ids[0, 1:].tolist()]
    order = log_probs.argsort()[:top].tolist()
    return {
        "perplexity": math.exp(-log_probs.mean().item()) if len(pieces) else None,
        "surprises": [{"label": pieces[i], "prob": math.exp(log_probs[i].item())} for i in order],
    }
