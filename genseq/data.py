"""Text data: where it comes from, how it is tokenized once and cached, how it is batched.

A source is local text (a file, a folder, a glob) or a Hugging Face `datasets`
dataset (a hub name, or a local dataset folder or csv/json/parquet file). Its
documents are tokenized once into a flat token file that is memory-mapped, so
a corpus never has to fit in memory:

    [EOS] doc1 [EOS] doc2 [EOS] ...

The EOS at the front gives the first token a context, and the model learns to
end a document. A document with a style label starts with the label's control
token (see genseq.tokenizer), which comes again before the first word after
every LABEL_EVERY tokens: [EOS] <style:austen> It is ... <style:austen> whole ... [EOS]
The repeats let a model learn what the label means from a corpus of a few long
documents (four novels are four starts), within truncated-BPTT windows; they
are never scored by evaluation (genseq.evaluate) and add no text.

Labels come from folders or from a dataset column. With --labels-from folders a
file's label is the first folder below the fixed part of --data: the folder
itself for a folder (DIR/LABEL/...), the path before the first wildcard for a
glob ('text/*/train/*.txt' labels text/austen/train/emma.txt "austen").
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import ConfigError, DataError
from .tokenizer import Tokenizer, check_label

CHUNK_CHARS = 1 << 20  # documents are read and tokenized a megabyte at a time
HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")
CACHE_DTYPES = {"uint16": np.uint16, "int32": np.int32}  # what a token cache entry may hold
DATASET_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow"}
LABEL_SOURCES = ("folders",)  # --labels-from; a dataset's labels come from --label-column
LABEL_EVERY = 256  # tokens of a labelled document between repeats of its label (4 bptt windows of 64)


def cache_dir() -> Path:
    return Path(os.environ.get("GENSEQ_CACHE_DIR", Path.home() / ".cache" / "genseq"))


# ---- sources ---------------------------------------------------------------
class Source:
    """What every source gives: its documents, each an iterator of text chunks, with their style labels or not."""

    spec: str

    def labelled_documents(self) -> Iterator[tuple[str | None, Iterator[str]]]:
        raise NotImplementedError

    def documents(self) -> Iterator[Iterator[str]]:
        for _, document in self.labelled_documents():
            yield document


class TextFiles(Source):
    """Local UTF-8 text files, each one document; labels, when given, holds each file's style label."""

    def __init__(self, paths: list[Path], spec: str, labels: list[str] | None = None):
        self.paths, self.spec, self.labels = paths, spec, labels

    def fingerprint(self) -> str:
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.paths]
        return json.dumps([stats, self.labels] if self.labels else stats)

    def labelled_documents(self) -> Iterator[tuple[str | None, Iterator[str]]]:
        for index, path in enumerate(self.paths):
            yield (self.labels[index] if self.labels else None), _read_chunks(path)

    def label_names(self) -> list[str]:
        return sorted(set(self.labels or ()))


class HFDataset(Source):
    """One text column of a Hugging Face dataset, each row one document; label_column, when given, holds its style label."""

    def __init__(self, spec: str, text_column: str, split: str, streaming: bool = False, label_column: str | None = None):
        self.spec, self.text_column, self.split, self.streaming = spec, text_column, split, streaming
        self.label_column = label_column
        self.dataset = _load_hf_dataset(spec, split, streaming)
        columns = self.dataset.column_names or []
        for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
            if columns and column is not None and column not in columns:
                raise DataError(f"{spec} has no column {column!r}; its columns are {', '.join(columns)} (use {flag})")

    def fingerprint(self) -> str:
        return json.dumps([self.spec, self.split, self.text_column, getattr(self.dataset, "_fingerprint", None)]
                          + ([self.label_column] if self.label_column else []))

    def labelled_documents(self) -> Iterator[tuple[str | None, Iterator[str]]]:
        for row in self.dataset:
            text = row[self.text_column]
            if not isinstance(text, str):
                raise DataError(f"column {self.text_column!r} of {self.spec} holds {type(text).__name__}, not text")
            yield (self._label(row[self.label_column]) if self.label_column else None), iter((text,))

    def label_names(self) -> list[str]:
        if not self.label_column:
            return []
        if self.streaming:
            raise ConfigError("--label-column needs the labels before training starts, which a streamed dataset "
                              "cannot give; drop --streaming")
        return sorted({label for label in map(self._label, self.dataset.unique(self.label_column)) if label})

    def _label(self, value) -> str | None:
        """A column value as a label: a class label's name, else its text; None or "" for no label."""
        if value is None or value == "":
            return None
        names = getattr(self.dataset.features.get(self.label_column), "names", None)
        return check_label(names[value] if names and isinstance(value, int) else str(value))


def open_source(spec: str, text_column: str = "text", split: str = "train", streaming: bool = False,
                labels_from: str | None = None, label_column: str | None = None):
    """Resolve a --data argument to a TextFiles or HFDataset source, labelled by folders or by a column if asked."""
    if labels_from is not None and labels_from not in LABEL_SOURCES:
        raise ConfigError(f"--labels-from must be {' or '.join(LABEL_SOURCES)}, not {labels_from!r}")
    source = _open_unlabelled(spec, text_column, split, streaming, label_column)
    if isinstance(source, HFDataset) and labels_from:
        raise ConfigError(f"{spec} is a dataset, whose labels come from a column: use --label-column, not --labels-from")
    if isinstance(source, TextFiles) and label_column:
        raise ConfigError(f"{spec} is text files, which have no columns: use --labels-from folders, not --label-column")
    if labels_from:
        source.labels = folder_labels(spec, source.paths)
    return source


def _open_unlabelled(spec: str, text_column: str, split: str, streaming: bool, label_column: str | None):
    path = Path(spec)
    dataset = functools.partial(HFDataset, spec, text_column, split, streaming, label_column)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() or _has_dataset_files(path):
            return dataset()
        return TextFiles(_text_files_under(path), spec)
    if path.is_file():
        if path.suffix in DATASET_SUFFIXES:
            return dataset()
        return TextFiles([path], spec)
    if glob.has_magic(spec):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        files = [file for match in matches for file in (_text_files_under(match) if match.is_dir() else [match])]
        if not files:
            raise DataError(f"no files match {spec}")
        return TextFiles(files, spec)
    if not HUB_NAME.fullmatch(spec) or path.suffix in (".txt", ".md"):
        raise DataError(f"{spec} does not exist")
    return dataset()


def folder_labels(spec: str, paths: list[Path]) -> list[str]:
    """Each file's label: its first folder below spec's fixed part (spec itself for a folder, the path before
    the first wildcard for a glob); DataError for a file directly in that part, which has no label folder."""
    parts = Path(spec).parts
    fixed = next((index for index, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    labels = []
    for path in paths:
        below = path.relative_to(root).parts
        if len(below) < 2:
            raise DataError(f"{path} is not inside a label folder: with --labels-from folders each file's label is "
                            f"the name of its first folder below {root}")
        labels.append(check_label(below[0]))
    return labels


def _text_files_under(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise DataError(f"{folder} holds no files")
    return files


def _has_dataset_files(folder: Path) -> bool:
    return any(p.suffix in DATASET_SUFFIXES for p in folder.iterdir() if p.is_file())


def _load_hf_dataset(spec: str, split: str, streaming: bool):
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()  # genseq shows its own
    path = Path(spec)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists()):
            loaded = datasets.load_from_disk(spec)
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        if path.is_file():
            return datasets.load_dataset(DATASET_SUFFIXES[path.suffix], data_files=spec, split="train", streaming=streaming)
        return datasets.load_dataset(spec, split=split, streaming=streaming)
    except (FileNotFoundError, ConnectionError) as error:
        raise DataError(f"cannot load dataset {spec}: {error}") from None
    except ValueError as error:
        raise DataError(f"cannot load split {split!r} of {spec}: {error}") from None
    except Exception as error:  # datasets raises many types for unreachable hubs and bad files
        raise DataError(f"{spec} is neither a local path nor a loadable dataset ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None


def _read_chunks(path: Path) -> Iterator[str]:
    """Yield a file's text in chunks that end at a line end, or at a character boundary
    within a line longer than a chunk; reject binary and non-UTF-8 files."""
    try:
        file = open(path, "rb")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    with file:
        offset, carry = 0, b""
        while block := file.read(CHUNK_CHARS):
            if b"\0" in block:
                raise DataError(f"{path} is a binary file, not text")
            data = carry + block
            cut = data.rfind(b"\n") + 1 or _last_character_start(data)
            data, carry = data[:cut], data[cut:]
            if data:
                yield _decode(data, path, offset)
            offset += len(data)
        if carry:
            yield _decode(carry, path, offset)


def _last_character_start(data: bytes) -> int:
    """Where data's last character starts if its bytes are incomplete, else len(data): a cut there
    leaves whole characters on both sides (invalid bytes are left for _decode to report)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the last character's first byte
            width = 2 if byte >= 0xC0 else 1
            width = 3 if byte >= 0xE0 else width
            width = 4 if byte >= 0xF0 else width
            return len(data) - back if width > back else len(data)
    return len(data)


def _decode(data: bytes, path: Path, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {offset + error.start})"
        ) from None


def iter_texts(source) -> Iterator[str]:
    """Every chunk of every document, for training a tokenizer."""
    for document in source.documents():
        yield from document


# ---- tokenized, cached streams ------------------------------------------------
@dataclass
class TokenStream:
    """A flat, memory-mapped array of token ids plus the counts evaluation needs."""

    tokens: np.ndarray  # (N,) uint16 or int32
    words: int
    bytes: int

    def __len__(self) -> int:
        return len(self.tokens)

    def split_tail(self, fraction: float) -> tuple["TokenStream", "TokenStream"]:
        """Split off the last fraction of tokens (word/byte counts are shared proportionally)."""
        cut = int(len(self) * (1 - fraction))
        head = TokenStream(self.tokens[: cut + 1], int(self.words * (1 - fraction)), int(self.bytes * (1 - fraction)))
        tail = TokenStream(self.tokens[cut:], self.words - head.words, self.bytes - head.bytes)
        return head, tail


def tokenize(source, tokenizer: Tokenizer, progress: bool = False, style: str | None = None,
             label_repeats: bool = True) -> TokenStream:
    """Tokenize a source once; later calls with the same files, tokenizer, style and label_repeats read the cache.

    Each document starts with the control token of its label, or of style when given (every document then
    has that label, as for scoring a text as written in one style). With label_repeats the token comes again
    after every LABEL_EVERY tokens, as training reads it; without, a document has it at its start only, as a
    prompt in a style has it before its continuation (evaluation).

    A cache entry is key.bin (the tokens) and key.json (their count and dtype), each written
    to a temporary name and renamed into place, the JSON last: an entry with its JSON is
    whole. One that is damaged anyway (truncated, edited) is found by its size and rebuilt.
    """
    if style:
        tokenizer.style_id(style)  # an unknown style is refused before any work
    variant = (style or "") + ("" if label_repeats else "\0once")
    key = hashlib.sha256(source.fingerprint().encode() + tokenizer.to_bytes() + variant.encode()).hexdigest()[:24]
    folder = cache_dir() / "tokens"
    data_path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    meta = _read_token_cache(data_path, meta_path)
    if meta is None:
        meta = _write_token_cache(source, tokenizer, style, label_repeats, folder, data_path, meta_path, progress)
    if meta["bytes"] == 0:
        raise DataError(f"{source.spec} holds no text")
    tokens = np.memmap(data_path, dtype=meta["dtype"], mode="r", shape=(meta["tokens"],))
    return TokenStream(tokens, meta["words"], meta["bytes"])


def _read_token_cache(data_path: Path, meta_path: Path) -> dict | None:
    """The metadata of a whole cache entry, or None when it is absent or damaged (then it is rebuilt)."""
    try:
        meta = json.loads(meta_path.read_bytes())
        counts = [meta[name] for name in ("tokens", "words", "bytes")]
        itemsize = np.dtype(CACHE_DTYPES[meta["dtype"]]).itemsize
        data_size = data_path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):  # missing, not JSON, not a dict, fields absent
        return None
    if not all(type(count) is int and count >= 0 for count in counts) or data_size != meta["tokens"] * itemsize:
        return None
    return meta


def _write_token_cache(source, tokenizer, style, label_repeats, folder, data_path, meta_path, progress) -> dict:
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.int32
    tmp = data_path.with_name(f".{data_path.name}.tmp{os.getpid()}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            count, words, size = _write_tokens(source, tokenizer, style, label_repeats, out, dtype, progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, data_path)
        meta = {"tokens": count, "words": words, "bytes": size, "dtype": np.dtype(dtype).name, "source": source.spec}
        _write_atomically(meta_path, json.dumps(meta).encode())
    except OSError as error:
        raise DataError(f"cannot write the token cache in {folder}: {error.strerror or error}; "
                        "free some space there or set GENSEQ_CACHE_DIR to another disk") from None
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def _write_tokens(source, tokenizer, style, label_repeats, out, dtype, progress) -> tuple[int, int, int]:
    """Write [EOS] doc1 [EOS] doc2 [EOS] ... to out, a labelled doc with its label's control token at its start
    and, with label_repeats, after every LABEL_EVERY tokens; -> (tokens, words, bytes)."""
    from tqdm import tqdm

    count, words, size = 1, 0, 0
    with tqdm(desc=f"tokenizing {source.spec}", unit="doc", disable=not progress, leave=False) as bar:
        out.write(np.array([tokenizer.eos_id], dtype=dtype).tobytes())
        for label, document in source.labelled_documents():
            label_ids = tokenizer.style_prefix(style or label)
            out.write(np.asarray(label_ids, dtype=dtype).tobytes())
            count, since = count + len(label_ids), 0
            for chunk in document:
                ids = tokenizer.encode(chunk)
                if label_ids and label_repeats:
                    ids, since = with_label(ids, label_ids[0], since, tokenizer.word_start_ids)
                out.write(np.asarray(ids, dtype=dtype).tobytes())
                count += len(ids)
                words += len(chunk.split())
                size += len(chunk.encode("utf-8"))
            out.write(np.array([tokenizer.eos_id], dtype=dtype).tobytes())
            count += 1
            bar.update()
    return count, words, size


def with_label(ids: list[int], label_id: int, since: int, word_starts: frozenset[int]) -> tuple[list[int], int]:
    """ids with label_id before each word start that follows LABEL_EVERY or more tokens without it, and the
    count of tokens since its last one; since: that count before ids."""
    labelled = []
    for token in ids:
        if since >= LABEL_EVERY and token in word_starts:
            labelled.append(label_id)
            since = 0
        labelled.append(token)
        since += 1
    return labelled, since


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---- batching ----------------------------------------------------------------
class ContiguousBatches:
    """Truncated-BPTT windows over B contiguous rows of a token stream.

        stream:  a b c d e f g h i j k l m n o p q r s t u v w x y
        B = 3:   row 0: a b c d e f g h      windows of bptt = 3:
                 row 1: i j k l m n o p        [a b c] -> [b c d], then [d e f] -> [e f g], ...
                 row 2: q r s t u v w x
    Row b continues in window i + 1 exactly where it stopped in window i, so the
    hidden state carried between windows is the state of the text that came before.
    rows picks some of the B rows (a process's share of a distributed batch): the
    rows are laid out by B whatever the share, so N processes together read
    exactly the batches one process would.
    """

    def __init__(self, stream: TokenStream, batch_size: int, bptt: int, name: str = "data", rows: range | None = None):
        self.tokens, self.batch_size, self.bptt = stream.tokens, batch_size, bptt
        self.rows = rows if rows is not None else range(batch_size)
        self.row_length = (len(stream.tokens) - 1) // batch_size
        if self.row_length < 1:
            raise DataError(
                f"the {name} has {len(stream.tokens)} tokens, too few for a batch of {batch_size} rows; "
                "use a smaller --batch-size or more text"
            )

    def __len__(self) -> int:
        return -(-self.row_length // self.bptt)

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Window index, or None past the end of the epoch."""
        return self.get_batch(index) if index < len(self) else None

    def get_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, T) of window index; the last window may be shorter."""
        start = index * self.bptt
        length = min(self.bptt, self.row_length - start)
        rows = np.stack([
            self.tokens[row * self.row_length + start : row * self.row_length + start + length + 1]
            for row in self.rows
        ]).astype(np.int64)
        window = torch.from_numpy(rows)  # (B, T + 1)
        return window[:, :-1], window[:, 1:]


class StyleWindows:
    """Rows read as a prompt in a style is: from a fresh state, [EOS], a document's style label, then text from
    a random word start inside that document (its label's repeats left out), with the loss on the text alone.

    Contiguous windows give a label only at a document's start and among text that already names the style, so
    the label is never the only clue to what follows. These rows make it the only one: a model trained with some
    of them in each batch (--style-rows) continues a prompt in the style its label asks for. A quarter of them
    leave the label out, as a prompt without a style does. The rows of a step are drawn from (seed, step), so a
    resumed run, on any number of processes, draws the ones it would have; rows picks a process's share.
    """

    UNLABELLED_SHARE = 0.25

    def __init__(self, stream: TokenStream, tokenizer: Tokenizer, count: int, seed: int, rows: range | None = None):
        tokens = np.asarray(stream.tokens)
        self.tokens, self.count, self.seed = tokens, count, seed
        self.rows = rows if rows is not None else range(count)
        self.eos_id, self.label_ids = tokenizer.eos_id, np.array(sorted(tokenizer.styles.values()), dtype=np.int64)
        self.word_start = np.zeros(tokenizer.vocab_size, dtype=bool)
        self.word_start[list(tokenizer.word_start_ids)] = True
        ends = np.flatnonzero(tokens == self.eos_id)  # [EOS] doc [EOS] doc ... [EOS]
        starts, ends = ends[:-1] + 1, ends[1:]
        labelled = np.isin(tokens[starts], self.label_ids) & (starts < ends)
        self.labels = np.where(labelled, tokens[starts], -1)
        self.starts, self.ends = starts + labelled, ends  # each document's text: tokens[start:end]
        lengths = self.ends - self.starts  # 0 for an empty document
        if not lengths.sum():
            raise DataError("the training data has no document text to draw --style-rows from")
        self.offsets = np.cumsum(lengths)  # a draw below offsets[-1] falls in the document searchsorted finds

    def batch(self, step: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (rows, length) of step's rows; a target of -100 is not scored (cross_entropy's
        ignore_index): the label itself, and what follows a document's end."""
        generator = np.random.default_rng([self.seed, step])
        draws = generator.integers(0, self.offsets[-1], self.count)
        unlabelled = generator.random(self.count) < self.UNLABELLED_SHARE
        rows = [self._row(int(draws[row]), bool(unlabelled[row]), length) for row in self.rows]
        inputs, targets = (torch.from_numpy(np.stack(part)) for part in zip(*rows))
        return inputs, targets

    def _row(self, draw: int, unlabelled: bool, length: int) -> tuple[np.ndarray, np.ndarray]:
        document = int(np.searchsorted(self.offsets, draw, side="right"))
        end = int(self.ends[document])
        start = int(self.starts[document]) + draw - int(self.offsets[document - 1] if document else 0)
        following = np.flatnonzero(self.word_start[self.tokens[start:min(start + length, end)]])  # the next word
        start += int(following[0]) if len(following) else 0
        label = int(self.labels[document])
        prefix = [self.eos_id] if unlabelled or label < 0 else [self.eos_id, label]
        text = self.tokens[start:min(end, start + 2 * length)]
        text = text[~np.isin(text, self.label_ids)][: length + 1 - len(prefix)].astype(np.int64)
        window = np.full(length + 1, -100, dtype=np.int64)
        window[: len(prefix)] = prefix
        window[len(prefix) : len(prefix) + len(text)] = text
        inputs, targets = window[:-1].copy(), window[1:].copy()
        inputs[inputs < 0] = self.eos_id  # past the document's end: read anything, score nothing
        targets[: len(prefix) - 1] = -100  # the label is given, not predicted
        return inputs, targets


# ---- streaming ------------------------------------------------------------------
def stream_pieces(source, rank: int = 0, world_size: int = 1) -> Iterator[tuple[str, bool]]:
    """(text, ends_document) pieces of this rank's share of a source, read lazily.

    A Hugging Face dataset is split with datasets' split_dataset_by_node (whole
    shards per rank where they divide evenly, else every world_size-th row);
    local files are read by every rank, which keeps every world_size-th piece.
    """
    if isinstance(source, HFDataset):
        dataset = source.dataset
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
        for row in dataset:
            text = row[source.text_column]
            if not isinstance(text, str):
                raise DataError(f"column {source.text_column!r} of {source.spec} holds {type(text).__name__}, not text")
            yield text, True
        return
    index = 0
    for document in source.documents():
        previous = None
        for chunk in document:
            if previous is not None:
                if index % world_size == rank:
                    yield previous, False
                index += 1
            previous = chunk
        if previous is not None:
            if index % world_size == rank:
                yield previous, True
            index += 1


class StreamingBatches:
    """Truncated-BPTT windows over rows filled from a stream as it is read: no pre-tokenisation pass.

    Each row starts with EOS and takes the next piece of the stream (a dataset row,
    or a megabyte of a file) whenever it runs short of a window, EOS after each
    document's last piece, so a row is a contiguous run of text and the carried
    state stays meaningful (a file longer than a piece is dealt to several rows).
    The position is the count of pieces taken and each row's leftover tokens;
    state() and restore() carry it across a resume. An epoch ends when the stream does.
    """

    def __init__(self, open_pieces, tokenizer: Tokenizer, rows: int, bptt: int):
        self.open_pieces, self.tokenizer, self.rows, self.bptt = open_pieces, tokenizer, rows, bptt
        self._reset()

    def restart(self) -> None:
        """Begin the stream again at the next window (the end of an epoch)."""
        self._reset()

    def _reset(self) -> None:
        self.taken, self.pieces = 0, None
        self.buffers = [[self.tokenizer.eos_id] for _ in range(self.rows)]

    def __len__(self):
        raise TypeError("a streamed corpus has no known length")

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next window (windows come in order; index is the caller's count), or None at the end of the stream."""
        if self.pieces is None:
            self.pieces = self.open_pieces()
            for _ in range(self.taken):  # resuming: pass over what was already taken
                next(self.pieces, None)
        need = self.bptt + 1
        for buffer in self.buffers:
            while len(buffer) < need:
                piece = next(self.pieces, None)
                if piece is None:
                    if index == 0:
                        raise DataError(f"the stream ended before it filled one batch of {self.rows} rows of "
                                        f"{self.bptt + 1} tokens; use a smaller --batch-size or --bptt, or more text")
                    self._reset()
                    return None
                text, ends_document = piece
                buffer.extend(self.tokenizer.encode(text))
                if ends_document:
                    buffer.append(self.tokenizer.eos_id)
                self.taken += 1
        window = torch.tensor([buffer[:need] for buffer in self.buffers], dtype=torch.long)  # (B, T + 1)
        self.buffers = [buffer[self.bptt :] for buffer in self.buffers]
        return window[:, :-1], window[:, 1:]

    def state(self) -> dict:
        return {"taken": self.taken, "buffers": self.buffers}

    def restore(self, state: dict) -> None:
        if len(state["buffers"]) != self.rows:
            raise DataError(f"the saved stream position has {len(state['buffers'])} rows, not {self.rows}")
        self.taken, self.buffers, self.pieces = state["taken"], [list(b) for b in state["buffers"]], None
