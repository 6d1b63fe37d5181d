import json
import os
from pathlib import Path

import pytest
import torch

from genseq import DataError
from genseq.data import ContiguousBatches, TokenStream, iter_texts, open_source, tokenize


def test_folder_glob_and_file_sources_read_the_same_documents(tmp_path):
    (tmp_path / "a.txt").write_text("first document\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("second one")
    by_folder = list(iter_texts(open_source(str(tmp_path))))
    by_glob = list(iter_texts(open_source(str(tmp_path / "**" / "*.txt"))))
    assert by_folder == by_glob == ["first document\n", "second one"]
    assert list(iter_texts(open_source(str(tmp_path / "a.txt")))) == ["first document\n"]


def test_stream_is_eos_separated_documents_and_counts_words_and_bytes(tmp_path, tokenizer):
    (tmp_path / "a.txt").write_text("thee and thou")
    (tmp_path / "b.txt").write_text("café")
    stream = tokenize(open_source(str(tmp_path)), tokenizer)
    eos = tokenizer.eos_id
    expected = [eos, *tokenizer.encode("thee and thou"), eos, *tokenizer.encode("café"), eos]
    assert stream.tokens.tolist() == expected
    assert (stream.words, stream.bytes) == (4, len("thee and thoucafé".encode()))


def test_tokenized_data_is_cached(tmp_path, tokenizer, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("summer's lease hath all too short a date")
    first = tokenize(open_source(str(path)), tokenizer)
    monkeypatch.setattr("genseq.data._write_token_cache", lambda *a: pytest.fail("tokenized twice"))
    second = tokenize(open_source(str(path)), tokenizer)
    assert second.tokens.tolist() == first.tokens.tolist()


def test_large_files_are_read_in_line_aligned_chunks(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr("genseq.data.CHUNK_CHARS", 64)
    text = "".join(f"line number {i} of a long file\n" for i in range(50))
    (tmp_path / "big.txt").write_text(text)
    chunks = list(iter_texts(open_source(str(tmp_path / "big.txt"))))
    assert len(chunks) > 10 and "".join(chunks) == text
    stream = tokenize(open_source(str(tmp_path / "big.txt")), tokenizer)
    assert stream.tokens.tolist()[1:-1] == tokenizer.encode(text)


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
    ("caf\u00e9".encode("latin-1"), r"is not UTF-8 text \(byte 0xe9 at offset 3\)"),
])
def test_binary_and_non_utf8_files_are_rejected(tmp_path, tokenizer, content, message):
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(DataError, match=message):
        tokenize(open_source(str(tmp_path / "bad.txt")), tokenizer)


def test_empty_corpus_and_missing_paths(tmp_path, tokenizer):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="holds no text"):
        tokenize(open_source(str(tmp_path / "empty.txt")), tokenizer)
    with pytest.raises(DataError, match="does not exist"):
        open_source(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="no files match"):
        open_source(str(tmp_path / "*.nothing"))


def test_hugging_face_dataset_from_a_local_jsonl_file(tmp_path, tokenizer):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": i, "body": f"row {i} text"}) + "\n" for i in range(3)))
    source = open_source(str(path), text_column="body")
    assert list(iter_texts(source)) == ["row 0 text", "row 1 text", "row 2 text"]
    with pytest.raises(DataError, match="no column 'text'; its columns are id, body"):
        open_source(str(path))


def test_hugging_face_dataset_saved_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["one", "two"]}).save_to_disk(str(tmp_path / "saved"))
    assert list(iter_texts(open_source(str(tmp_path / "saved")))) == ["one", "two"]


def test_contiguous_batches_continue_each_row_across_windows():
    stream = TokenStream(torch.arange(25).numpy(), words=0, bytes=0)
    batches = ContiguousBatches(stream, batch_size=3, bptt=3)
    assert batches.row_length == 8 and len(batches) == 3
    x0, y0 = batches.get_batch(0)
    x1, _ = batches.get_batch(1)
    x2, y2 = batches.get_batch(2)
    assert x0.tolist() == [[0, 1, 2], [8, 9, 10], [16, 17, 18]]
    assert y0.tolist() == [[1, 2, 3], [9, 10, 11], [17, 18, 19]]
    assert x1[:, 0].tolist() == [3, 11, 19]
    assert x2.tolist() == [[6, 7], [14, 15], [22, 23]] and y2[:, -1].tolist() == [8, 16, 24]


def test_corpus_smaller_than_one_batch_is_rejected():
    with pytest.raises(DataError, match="too few for a batch of 32 rows"):
        ContiguousBatches(TokenStream(torch.arange(10).numpy(), 0, 0), batch_size=32, bptt=8)


# ---- lines longer than a chunk ------------------------------------------------------------
def long_line(unit: str, size: int, prefix: str = "") -> str:
    """One line of about size bytes of unit repeated, with no newline in it."""
    return prefix + unit * (size // len(unit.encode("utf-8")))


@pytest.mark.parametrize("text", [
    long_line("日本語の文章", 3 << 20),  # 3-byte characters: 1 MiB is not a multiple of 3
    long_line("🙂🎉", 3 << 20, prefix="x"),  # 4-byte characters shifted by one byte
    "a" * ((1 << 20) - 1) + "€ and on\n" + long_line("é", 1 << 20),  # a 3-byte character across the 1 MiB mark
])
def test_a_valid_line_longer_than_a_chunk_is_read_whole_without_splitting_characters(tmp_path, text):
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    chunks = list(iter_texts(open_source(str(tmp_path / "long.txt"))))
    assert len(chunks) > 1 and "".join(chunks) == text


def test_invalid_utf8_inside_a_long_line_is_still_reported_at_its_offset(tmp_path, tokenizer):
    data = "日本".encode() * 400_000 + b"\xff" + "語".encode() * 10
    (tmp_path / "bad.txt").write_bytes(data)
    with pytest.raises(DataError, match=r"is not UTF-8 text \(byte 0xff at offset 2400000\)"):
        tokenize(open_source(str(tmp_path / "bad.txt")), tokenizer)


# ---- the token cache ----------------------------------------------------------------------------
def cache_entry(tmp_path, tokenizer, text="the summer's rose"):
    """A tokenized file and its cache entry's data and metadata paths."""
    from genseq.data import cache_dir

    (tmp_path / "a.txt").write_text(text)
    stream = tokenize(open_source(str(tmp_path / "a.txt")), tokenizer)
    folder = cache_dir() / "tokens"
    meta = next(p for p in folder.glob("*.json") if json.loads(p.read_text())["source"] == str(tmp_path / "a.txt"))
    return stream.tokens.tolist(), meta.with_suffix(".bin"), meta


def rebuilds(tmp_path, tokenizer, monkeypatch) -> list:
    import genseq.data

    calls, original = [], genseq.data._write_token_cache
    monkeypatch.setattr(genseq.data, "_write_token_cache", lambda *a: calls.append(1) or original(*a))
    return calls


@pytest.mark.parametrize("damage", [
    lambda data, meta: data.write_bytes(data.read_bytes()[:-2]),  # truncated tokens
    lambda data, meta: meta.write_text("{garbage"),
    lambda data, meta: meta.write_text(""),
    lambda data, meta: meta.write_text("[1, 2]"),
    lambda data, meta: meta.write_text(meta.read_text().replace('"tokens": ', '"tokens": 1')),  # size mismatch
    lambda data, meta: meta.write_text(meta.read_text().replace('"uint16"', '"object"')),
    lambda data, meta: data.unlink(),
])
def test_a_damaged_token_cache_entry_is_rebuilt(tmp_path, tokenizer, monkeypatch, damage):
    tokens, data, meta = cache_entry(tmp_path, tokenizer)
    damage(data, meta)
    calls = rebuilds(tmp_path, tokenizer, monkeypatch)
    again = tokenize(open_source(str(tmp_path / "a.txt")), tokenizer)
    assert calls == [1] and again.tokens.tolist() == tokens


def test_token_cache_writes_go_through_temporary_names_metadata_last(tmp_path, tokenizer, monkeypatch):
    import genseq.data

    renames, original = [], os.replace
    monkeypatch.setattr(genseq.data.os, "replace", lambda src, dst: renames.append((Path(src).name, Path(dst).suffix))
                        or original(src, dst))
    cache_entry(tmp_path, tokenizer)
    assert [suffix for _, suffix in renames] == [".bin", ".json"]
    assert all(source.startswith(".") and ".tmp" in source for source, _ in renames)


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_full_disk_while_caching_tokens_is_one_sentence_and_leaves_no_entry(tmp_path, tokenizer, monkeypatch, failing):
    import errno

    import genseq.data
    from genseq.data import cache_dir

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "write":
        monkeypatch.setattr(genseq.data, "_write_tokens", disk_full)
    else:
        monkeypatch.setattr(genseq.data.os, "fsync", disk_full)
    (tmp_path / "a.txt").write_text("a text never cached before, unlike any other")
    folder = cache_dir() / "tokens"
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    with pytest.raises(DataError, match=r"cannot write the token cache in .*: No space left on device; free some space"):
        tokenize(open_source(str(tmp_path / "a.txt")), tokenizer)
    assert set(folder.iterdir()) == before
    monkeypatch.undo()
    assert len(tokenize(open_source(str(tmp_path / "a.txt")), tokenizer)) > 2
