"""SentencePiece tokenizer: training from an iterator of text, encoding, decoding, saving.

Newlines are handled here rather than by SentencePiece: each line is encoded on
its own (so a word starts with the same piece at the start of a line as in the
middle of one) and lines are joined by the byte piece for "\\n". Byte fallback
means no input character is ever unknown, and decode(encode(text)) == text.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

import sentencepiece as spm

from .errors import CheckpointError, ConfigError, DataError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
NEWLINE_PIECE = "<0x0A>"
MODEL_TYPES = ("unigram", "bpe")
# SentencePiece reserves 256 byte pieces plus the four special ids.
MIN_VOCAB_SIZE = 256 + 4 + 1


class Tokenizer:
    """A trained SentencePiece model with genseq's special ids (pad 0, unk 1, bos 2, eos 3)."""

    def __init__(self, model_proto: bytes):
        self._model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.newline_id = self.sp.piece_to_id(NEWLINE_PIECE)
        if self.newline_id == self.sp.unk_id():
            raise CheckpointError("the tokenizer was trained without byte fallback, which genseq needs")

    # ---- construction -------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        max_sentences: int = 2_000_000,
    ) -> "Tokenizer":
        """Train on an iterator of texts; each is split into lines, none is held whole."""
        if model_type not in MODEL_TYPES:
            raise ConfigError(f"tokenizer type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
        if vocab_size < MIN_VOCAB_SIZE:
            raise ConfigError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 byte pieces + specials), not {vocab_size}")
        sentences = _nonempty_lines(texts)
        writer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences,
                model_writer=writer,
                vocab_size=vocab_size,
                model_type=model_type,
                byte_fallback=True,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                split_digits=True,
                input_sentence_size=max_sentences,
                shuffle_input_sentence=True,
                max_sentence_length=16384,
                num_threads=os.cpu_count() or 1,
                minloglevel=2,
            )
        except RuntimeError as error:
            raise _training_error(error, vocab_size) from None
        return cls(writer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        try:
            return cls(Path(path).read_bytes())
        except FileNotFoundError:
            raise CheckpointError(f"{path} is missing") from None
        except (RuntimeError, OSError) as error:
            raise CheckpointError(f"{path} is not a readable SentencePiece model ({error})") from None

    def to_bytes(self) -> bytes:
        return self._model_proto

    # ---- properties ---------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    # ---- encoding -----------------------------------------------------
    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for index, line in enumerate(text.split("\n")):
            if index:
                ids.append(self.newline_id)
            if line:
                ids.extend(self.sp.encode(line))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        lines: list[list[int]] = [[]]
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.newline_id:
                lines.append([])
            elif token_id not in (PAD_ID, BOS_ID, EOS_ID):
                lines[-1].append(token_id)
        return "\n".join(self.sp.decode(line) for line in lines)

    def token_texts(self, ids: list[int]) -> list[str]:
        """The text each token adds, spaces included (decoding one piece alone drops its leading space)."""
        texts, previous = [], ""
        for end in range(1, len(ids) + 1):
            text = self.decode(ids[:end])
            texts.append(text[len(previous):] if text.startswith(previous) else text)
            previous = text
        return texts

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


def _nonempty_lines(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def _training_error(error: RuntimeError, vocab_size: int) -> Exception:
    message = str(error)
    too_high = re.search(r"Vocabulary size too high.*<= (\d+)", message)
    if too_high:
        return ConfigError(
            f"vocab size {vocab_size} is larger than this corpus supports; use at most {too_high.group(1)}"
        )
    too_low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    if too_low:
        return ConfigError(
            f"vocab size {vocab_size} is too small for the characters of this corpus; use at least {too_low.group(1)}"
        )
    if "No valid sentence" in message or "empty" in message.lower():
        return DataError("the tokenizer found no text to train on")
    return DataError(f"SentencePiece could not train on this text: {message.splitlines()[-1]}")
