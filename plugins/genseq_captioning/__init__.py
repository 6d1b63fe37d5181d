"""The built-in `captioning` task: a CNN encoder and an LSTM decoder with attention describe an image.

Importing this package is light (the task declaration only); the model code
loads on first use. The library API: load_captioner, Captioner, caption_metrics, corpus_bleu.
"""

from .task import CaptioningTask

__all__ = ["CaptioningTask", "Captioner", "load_captioner", "caption_metrics", "corpus_bleu"]


def __getattr__(name):
    if name in ("Captioner", "load_captioner"):
        from . import captioner

        return getattr(captioner, name)
    if name in ("caption_metrics", "corpus_bleu"):
        from . import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
