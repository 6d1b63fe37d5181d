"""The built-in `captioning` task: a CNN encoder and an LSTM decoder with attention describe an image.

Importing this package is light (the task declaration only); the model code
loads on first use. The library API: load_captioner, Captioner, corpus_bleu.
"""

from .task import CaptioningTask

__all__ = ["CaptioningTask", "Captioner", "load_captioner", "corpus_bleu"]


def __getattr__(name):
    if name in ("Captioner", "load_captioner"):
        from . import captioner

        return getattr(captioner, name)
    if name == "corpus_bleu":
        from .bleu import corpus_bleu

        return corpus_bleu
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
