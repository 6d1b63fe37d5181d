"""SentencePiece tokenizer: training from an iterator of text, encoding, decoding, saving.

Newlines are handled here rather than by SentencePiece: each line is encoded on
its own (so a word starts with the same piece at the start of a line as in the
middle of one) and lines are joined by the byte piece for "\\n". Byte fallback
means no input character is ever unknown, and decode(encode(text)) == text.

The model types are SentencePiece's: unigram and bpe learn word pieces, char
keeps one piece per character (the vocabulary size then caps how many of the
most frequent characters get a piece; the others are spelt in bytes). Every
type needs at least MIN_VOCAB_SIZE pieces and is saved in the same file format.

Style labels are SentencePiece control symbols, "<style:NAME>": each is one id
that encode() never produces from text and decode() leaves out, so a label can
start its documents in training and a prompt in generation without ever
appearing in the text either side. A trained tokenizer gains labels with
with_styles(): their symbols follow its last piece, so every text keeps its ids.
"""

from __future__ import annotations

import codecs
import functools
import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import sentencepiece as spm

from .errors import CheckpointError, ConfigError, DataError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
NEWLINE_PIECE = "<0x0A>"
MODEL_TYPES = ("unigram", "bpe", "char")
STYLE_PIECE = re.compile(r"<style:(.+)>")  # a style label's control symbol
BAD_LABEL_CHARACTERS = re.compile(r"[\s,<>]")  # SentencePiece takes its control symbols as a comma-separated list
# The 256 byte pieces, the four special ids and at least one piece of text.
MIN_VOCAB_SIZE = 256 + 4 + 1
# SentencePiece skips, without a word, training sentences longer than this many bytes; longer
# lines are cut into pieces before they reach it. Pieces of 1 KiB train ten times faster than
# pieces of 16 KiB (measured on a one-line 700 KB corpus: 1.4 s against 15 s of CPU).
MAX_SENTENCE_BYTES = 16384
LONG_LINE_PIECE_BYTES = 1024

# SentencePiece's C++ logging (absl) would print lines of its own before genseq's one-sentence
# errors; every failure it reports also raises, and genseq words those.
if hasattr(spm, "set_min_log_level"):
    spm.set_min_log_level(3)


class Tokenizer:
    """A trained SentencePiece model with genseq's special ids (pad 0, unk 1, bos 2, eos 3)."""

    def __init__(self, model_proto: bytes):
        """model_proto: a serialized SentencePiece model; RuntimeError when it is not one."""
        if not model_proto:
            # SentencePieceProcessor(model_proto=b"") would make an empty processor instead of failing.
            raise RuntimeError("the file is empty")
        self._model_proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(model_proto)
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
        styles: Iterable[str] = (),
    ) -> "Tokenizer":
        """Train on an iterator of texts; each is split into lines, none is held whole.

        vocab_size is the number of pieces, at least MIN_VOCAB_SIZE; for model_type "char" it is an upper
        bound, as a corpus has only so many characters. Each of styles (label names) gets a control symbol,
        counted in vocab_size.
        """
        if model_type not in MODEL_TYPES:
            raise ConfigError(f"tokenizer type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
        if vocab_size < MIN_VOCAB_SIZE:
            raise ConfigError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 byte pieces + specials), not {vocab_size}")
        styles = [check_label(style) for style in styles]
        cut: list[bool] = []
        sentences = _nonempty_lines(texts, cut)
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
                max_sentence_length=MAX_SENTENCE_BYTES,
                control_symbols=[style_piece(style) for style in styles],
                num_threads=os.cpu_count() or 1,
                minloglevel=2,
            )
        except RuntimeError as error:
            raise _training_error(error, vocab_size) from None
        if cut:  # warned here, not inside the iterator, which SentencePiece's C++ code drives
            warnings.warn(f"the corpus has lines longer than {MAX_SENTENCE_BYTES} bytes, which SentencePiece skips; "
                          "the tokenizer was trained on them cut into pieces at spaces", stacklevel=2)
        return cls(writer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        from .checkpoint import MAX_TOKENIZER_BYTES, check_regular_file  # checkpoint imports this module

        check_regular_file(path, MAX_TOKENIZER_BYTES)
        try:
            return cls(Path(path).read_bytes())
        except FileNotFoundError:
            raise CheckpointError(f"{path} is missing") from None
        except OSError as error:
            raise CheckpointError(f"cannot read {path}: {error.strerror}") from None
        except RuntimeError as error:
            reason = str(error).split("]")[-1].strip() or "it cannot be parsed"
            raise CheckpointError(f"{path} is not a readable SentencePiece model ({reason})") from None

    def with_styles(self, styles: Iterable[str]) -> "Tokenizer":
        """This tokenizer with a control symbol for each of styles it has not, numbered after its last piece.

        encode() gives every text the ids it gave before, so a model trained with this
        tokenizer keeps its embeddings and only gains rows (genseq.model.with_vocabulary).
        """
        added = [check_label(style) for style in dict.fromkeys(styles) if style not in self.styles]
        return Tokenizer(self._model_proto + b"".join(_control_piece_field(style_piece(style)) for style in added))

    def to_bytes(self) -> bytes:
        return self._model_proto

    # ---- properties ---------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    @functools.cached_property
    def styles(self) -> dict[str, int]:
        """Style label -> the id of its control symbol, in id order ({} for a tokenizer trained without labels)."""
        found = {}
        for token_id in range(self.vocab_size):
            match = STYLE_PIECE.fullmatch(self.sp.id_to_piece(token_id)) if self.sp.is_control(token_id) else None
            if match:
                found[match.group(1)] = token_id
        return found

    @functools.cached_property
    def word_start_ids(self) -> frozenset[int]:
        """The ids of pieces that begin a word (SentencePiece's "▁" first): where a label may go before text."""
        return frozenset(i for i in range(self.vocab_size) if self.sp.id_to_piece(i).startswith("▁"))

    def style_id(self, style: str) -> int:
        """The control id that starts text of the label style; ConfigError naming the known labels otherwise."""
        if style in self.styles:
            return self.styles[style]
        if not self.styles:
            raise ConfigError(f"style {style!r} cannot be used: this model was trained without style labels")
        raise ConfigError(f"this model has no style {style!r}; its styles are {', '.join(self.styles)}")

    def style_prefix(self, style: str | None) -> list[int]:
        """[the style's control id], or [] for no style (None or "")."""
        return [self.style_id(style)] if style else []

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

    def token_texts(self, ids: Iterable[int]) -> list[str]:
        """The text each token adds, spaces included, in one pass: "".join(token_texts(ids)) == decode(ids).

        A piece adds itself with "▁" read as a space, less the space SentencePiece puts
        before each line (decoding one piece alone would drop every piece's leading space).
        Byte pieces add the characters they complete: the tokens of a character's first
        bytes add "", the one of its last byte the whole character.
        """
        texts: list[str] = []
        pending = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character's bytes so far
        line_start = True
        for token_id in map(int, ids):
            if token_id in (PAD_ID, BOS_ID, EOS_ID) or self.sp.is_control(token_id):
                texts.append("")
                continue
            if self.sp.is_byte(token_id) and token_id != self.newline_id:
                texts.append(pending.decode(bytes([int(self.sp.id_to_piece(token_id)[3:5], 16)])))
            else:
                # Bytes left hanging before a piece or a line break decode as U+FFFD, as decode() does.
                texts.append(pending.decode(b"", final=True) + self._piece_text(token_id, line_start))
                pending.reset()
            line_start = token_id == self.newline_id
        if texts:
            texts[-1] += pending.decode(b"", final=True)
        return texts

    def _piece_text(self, token_id: int, line_start: bool) -> str:
        """The text of a piece that is not a byte of a longer character."""
        if token_id == self.newline_id:
            return "\n"
        if self.sp.is_unknown(token_id):
            return self.sp.decode([token_id])  # SentencePiece's surface for it, " ⁇ "
        text = self.sp.id_to_piece(token_id)
        if line_start and self._drops_line_space and text.startswith("▁"):
            text = text[1:]
        return text.replace("▁", " ")

    @functools.cached_property
    def _drops_line_space(self) -> bool:
        """Whether decoding removes the space the tokenizer adds before each line (add_dummy_prefix)."""
        return self.sp.decode_pieces(["▁"]) == ""

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


def style_piece(style: str) -> str:
    """The control symbol of a style label."""
    return f"<style:{style}>"


def _control_piece_field(piece: str) -> bytes:
    """A SentencePiece ModelProto's `pieces` field (number 1) holding one control symbol of score 0.

    Appended to a serialized model it becomes the last piece: protobuf parsers add a repeated field's
    entries in the order they come. The message is SentencePiece{piece = 1; score = 2; type = 3}, with
    type 3 CONTROL (sentencepiece_model.proto).
    """
    text = piece.encode()
    body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", 0.0) + b"\x18\x03"
    return b"\x0a" + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    """value as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def check_label(label: str) -> str:
    """label, if it can name a style: a non-empty name without spaces, commas or angle brackets; else DataError."""
    if not label or BAD_LABEL_CHARACTERS.search(label):
        raise DataError(f"{label!r} cannot be a style label: a label is a name without spaces, commas, '<' or '>'")
    return label


def _nonempty_lines(texts: Iterable[str], cut: list[bool]) -> Iterator[str]:
    """The non-blank lines of texts, a line over MAX_SENTENCE_BYTES cut into pieces of about
    LONG_LINE_PIECE_BYTES (SentencePiece would drop it whole); cut becomes [True] when a line was."""
    for text in texts:
        for line in text.split("\n"):
            if not line.strip():
                continue
            if len(line) * 4 <= MAX_SENTENCE_BYTES or len(line.encode("utf-8")) <= MAX_SENTENCE_BYTES:
                yield line
                continue
            cut[:] = [True]
            yield from (piece for piece in split_long_line(line, LONG_LINE_PIECE_BYTES) if piece.strip())


def split_long_line(line: str, max_bytes: int) -> Iterator[str]:
    """line in consecutive pieces of at most max_bytes UTF-8 bytes, each cut after the last space
    or tab in its second half when there is one, else at the limit; never inside a character."""
    data, start = line.encode("utf-8"), 0
    while len(data) - start > max_bytes:
        end = start + max_bytes
        while data[end] & 0xC0 == 0x80:  # a continuation byte: the cut would split a character
            end -= 1
        space = max(data.rfind(b" ", start + max_bytes // 2, end), data.rfind(b"\t", start + max_bytes // 2, end))
        cut = space + 1 if space >= 0 else end
        yield data[start:cut].decode("utf-8")
        start = cut
    yield data[start:].decode("utf-8")


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
