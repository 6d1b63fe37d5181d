import json

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
