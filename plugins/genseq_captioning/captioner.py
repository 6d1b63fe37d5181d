"""The captioner: encoder, decoder and tokenizer as one model, its checkpoint, and caption generation.

A checkpoint is genseq's usual directory (config.json of kind "captioner",
model.safetensors, tokenizer.model) with the encoder and the decoder in one
weights file: `encoder.backbone.*` (stored in float16 when the encoder is
frozen, the precision its features were trained with) and `decoder.*`.

Generation goes through genseq's engine: every image's decoder starts from
[BOS], and greedy decoding, sampling and beam search advance all images and
beams in one batched step per word. The attention weights of the chosen
captions come from one teacher-forced pass over their tokens afterwards,
because the engine returns tokens, not the states along the way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from genseq import Tokenizer
from genseq.checkpoint import WEIGHTS_FILE, ModelKind, load_checkpoint, model_files, write_files
from genseq.defaults import packaged_model_dir
from genseq.errors import CheckpointError
from genseq.generation import GeneratedSequence, GenerationConfig, generate_ids

from .decoder import BoundDecoder, CaptionDecoder, DecoderConfig
from .encoder import EncoderConfig, ImageEncoder

KIND = "captioner"
DEFAULT_DIR = Path(__file__).parent / "models" / "captioner"


@dataclass
class Caption:
    """One generated caption of one image."""

    text: str
    tokens: list[int]  # EOS included when generated
    logprob: float
    finish_reason: str
    score: float  # what beam search ranked by


class Captioner(nn.Module):
    def __init__(self, encoder: ImageEncoder, decoder: CaptionDecoder, tokenizer: Tokenizer):
        super().__init__()
        if encoder.channels != decoder.config.feature_channels:
            raise CheckpointError(f"the encoder gives {encoder.channels} channels but the decoder expects "
                                  f"{decoder.config.feature_channels}")
        if tokenizer.vocab_size != decoder.config.vocab_size:
            raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} pieces but the decoder expects "
                                  f"{decoder.config.vocab_size}")
        self.encoder, self.decoder, self.tokenizer = encoder, decoder, tokenizer

    @classmethod
    def create(cls, encoder_config: EncoderConfig, tokenizer: Tokenizer, **decoder_options) -> "Captioner":
        """A new captioner with random weights, the decoder sized to the encoder and the tokenizer."""
        encoder = ImageEncoder(encoder_config)
        options = {**decoder_options, "vocab_size": tokenizer.vocab_size, "feature_channels": encoder.channels}
        return cls(encoder, CaptionDecoder(DecoderConfig(**options)), tokenizer)

    @property
    def image_size(self) -> int:
        return self.encoder.config.image_size

    def model_config(self) -> dict:
        return {"encoder": self.encoder.config.to_dict(), "decoder": self.decoder.config.to_dict()}

    # ---- captions ------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, pixels: Tensor) -> Tensor:
        """Normalised images (B, 3, S, S) -> features (B, C, h, w).

        The frozen stages' output is rounded to float16, as the training feature
        cache stores it, so a training image gets the very features it was trained on.
        """
        frozen = self.encoder.frozen_features(pixels.to(self.device)).half().float()  # (B, C', h', w')
        return self.encoder.finish(frozen)

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def generate(self, features: Tensor, config: GenerationConfig) -> list[list[Caption]]:
        """Captions of each image's features (B, C, h, w): num_return_sequences each, best first for beams."""
        if features.size(0) == 0:
            return []
        bound = BoundDecoder(self.decoder, features.to(self.device).float())
        eos, bos = self.tokenizer.eos_id, self.tokenizer.bos_id
        results = generate_ids(bound, [[] for _ in range(features.size(0))], config, eos, start_id=bos)
        return [[self._caption(sequence) for sequence in sequences] for sequences in results]

    def _caption(self, sequence: GeneratedSequence) -> Caption:
        text = self.tokenizer.decode(sequence.tokens).strip()
        return Caption(text, sequence.tokens, sequence.logprob, sequence.finish_reason, sequence.score)

    @torch.no_grad()
    def attention(self, features: Tensor, captions: list[list[int]]) -> list[Tensor]:
        """The attention weights behind each caption's tokens: one (T, h, w) tensor per image, rows summing to 1.

        Row t is where the decoder looked when it produced token t (EOS included).
        A model without attention gives (T, 0, 0) tensors.
        """
        if not captions:
            return []
        grid = features.shape[-2:]
        width = max(len(tokens) for tokens in captions)
        inputs = torch.zeros(len(captions), max(width, 1), dtype=torch.long)  # (B, T): [BOS, w1, ...], padded
        for row, tokens in enumerate(captions):
            inputs[row, : len(tokens)] = torch.tensor([self.tokenizer.bos_id, *tokens[:-1]][: len(tokens)])
        was_training = self.decoder.training
        self.decoder.eval()
        _, alphas = self.decoder(features.to(self.device).float(), inputs.to(self.device))  # (B, T, N)
        self.decoder.train(was_training)
        if not self.decoder.config.attention:
            return [torch.zeros(len(tokens), 0, 0) for tokens in captions]
        return [alphas[row, : len(tokens)].reshape(len(tokens), *grid).cpu() for row, tokens in enumerate(captions)]

    # ---- checkpoints ---------------------------------------------------------------------
    def files(self, **extra) -> dict[str, bytes]:
        """The checkpoint's three files as bytes (extra goes into config.json)."""
        files = model_files(self, self.model_config(), self.tokenizer, kind=KIND, **extra)
        files[WEIGHTS_FILE] = save_safetensors(self.stored_weights())
        return files

    def stored_weights(self) -> dict[str, Tensor]:
        half = self.encoder.config.storage == "float16"
        weights = {}
        for name, tensor in self.state_dict().items():
            tensor = tensor.detach().cpu().contiguous()
            if half and name.startswith("encoder.") and tensor.is_floating_point():
                tensor = tensor.half()
            weights[name] = tensor
        return weights

    def save(self, directory: str | os.PathLike, **extra) -> None:
        """Write a loadable checkpoint; each file is replaced atomically."""
        write_files(directory, self.files(**extra))


def build(configs: dict, tokenizer: Tokenizer) -> Captioner:
    """A captioner of fresh weights from its parts' configs ({"encoder": EncoderConfig, "decoder": DecoderConfig})."""
    return Captioner(ImageEncoder(configs["encoder"]), CaptionDecoder(configs["decoder"]), tokenizer)


CAPTIONER = ModelKind(KIND, {"encoder": EncoderConfig, "decoder": DecoderConfig}, build)


def load_captioner(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Captioner:
    """Load a captioner checkpoint (None: the shipped default); the model is in eval mode."""
    return load_checkpoint(default_dir() if name_or_path is None else name_or_path, CAPTIONER, device)[0]


def default_dir() -> Path:
    return packaged_model_dir(DEFAULT_DIR, "default captioner", "genseq train captioning")
