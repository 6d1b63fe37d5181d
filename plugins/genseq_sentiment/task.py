"""The `sentiment` task: text in; positive or negative with its probability, and the opinion after each token.

Outputs: `sentiment` (a label with its probability), `opinion` (a picture of
P(positive) after each token, the way the LSTM's opinion moves through the
text) and `tokens` (each token with P(positive) after it, for --json).
"""

from __future__ import annotations

from genseq.tasks import Example, Input, Option, Output, Task


class SentimentTask(Task):
    name = "sentiment"
    description = ("Type a short text, a tweet about a flight say, and see whether it reads as positive or negative, "
                   "and how that opinion moves word by word.")
    inputs = (Input("text", "text", "the text to classify",
                    placeholder="Type a short text, such as a tweet to an airline, or pick an example below"),)
    outputs = (
        Output("sentiment", "label", "positive or negative, with its probability"),
        Output("opinion", "image", "P(positive) after each token"),
        Output("tokens", "json", "each token with P(positive) after it"),
    )
    options = (Option("threshold", 0.5, "the probability of positive from which a text is called positive",
                      minimum=0.0, maximum=1.0, advanced=True),)
    examples = (Example("thanks", {"text": "Thank you so much, the crew was wonderful!"}),
                Example("a delay", {"text": "Two hours on the tarmac and nobody told us anything."}),
                Example("mild praise", {"text": "The flight was not bad at all"}))
    model_kinds = ("sentiment",)
    commands = ".cli"  # genseq train / eval sentiment

    @classmethod
    def default_model_dir(cls):
        from .model import default_dir

        return str(default_dir())

    def load(self, model_path):
        from .model import load_sentiment

        return load_sentiment(model_path, device=self.device)

    def predict(self, model, batch, options):
        from genseq.errors import ConfigError

        from .picture import opinion_picture

        texts = [item["text"] for item in batch]
        if any(not text.strip() for text in texts):
            raise ConfigError("there is no text to classify; type a sentence")
        results = []
        for text, found in zip(texts, model.classify(texts)):
            positive = found["positive"] >= options["threshold"]
            label = {"label": "positive" if positive else "negative",
                     "prob": found["positive"] if positive else 1 - found["positive"]}
            results.append({"text": text, "sentiment": label, "positive": found["positive"],
                            "tokens": [{"token": t, "positive": p} for t, p in found["tokens"]],
                            "opinion": opinion_picture(found["tokens"], options["threshold"])})
        return results

    def to_json(self, batch, results):
        kept = [{key: result[key] for key in ("text", "sentiment", "positive", "tokens")} for result in results]
        return kept[0] if len(kept) == 1 else kept
