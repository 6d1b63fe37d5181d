"""A tiny captioner checkpoint for the captioning tests: random weights, fast, enough for everything but quality."""

from __future__ import annotations

from pathlib import Path

import torch
from genseq_captioning.captioner import Captioner
from genseq_captioning.encoder import EncoderConfig, load_pretrained


def save_tiny_captioner(directory: Path, tokenizer, encoder_weights: str | None = None) -> Path:
    """Save a random-weight captioner (64-pixel images, a decoder of a few thousand weights) into directory;
    encoder_weights (a file load_pretrained reads) gives it an encoder whose features tell pictures apart."""
    torch.manual_seed(0)
    captioner = Captioner.create(EncoderConfig(image_size=64), tokenizer, feature_size=16, embedding_size=12,
                                 hidden_size=20, attention_size=10)
    load_pretrained(captioner.encoder, encoder_weights)
    captioner.save(directory)
    return directory
