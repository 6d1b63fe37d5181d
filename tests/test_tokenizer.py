import pytest

from genseq import ConfigError, Tokenizer
from genseq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID


@pytest.mark.parametrize("text", [
    "Shall I compare thee to a summer's day?",
    "two  spaces,\ttabs and\n\nblank lines\n",
    "  leading and trailing spaces  ",
    "unseen characters: 日本語, café, emoji 🙂, ẞ",
    "",
])
def test_decode_inverts_encode(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_unseen_characters_fall_back_to_bytes_not_unknown(tokenizer):
    ids = tokenizer.encode("日本 🙂")
    assert UNK_ID not in ids
    assert all(tokenizer.id_to_piece(i).startswith(("<0x", "▁")) for i in ids)


def test_special_ids(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert tokenizer.decode([BOS_ID, *tokenizer.encode("thee"), EOS_ID]) == "thee"


def test_a_word_at_the_start_of_a_line_uses_the_same_pieces_as_mid_line(tokenizer):
    first_line = tokenizer.encode("thee")
    assert tokenizer.encode("x\nthee")[-len(first_line):] == first_line


def test_trains_from_a_one_pass_iterator(train_file):
    lines = (line for line in train_file.read_text().splitlines())
    tokenizer = Tokenizer.train(lines, vocab_size=400, model_type="bpe")
    assert tokenizer.vocab_size == 400


def test_vocab_larger_than_the_corpus_supports_is_a_clear_error():
    with pytest.raises(ConfigError, match="use at most"):
        Tokenizer.train(["a tiny corpus of very few words"] * 10, vocab_size=5000)


def test_save_and_load_round_trip(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(tokenizer.to_bytes())
    loaded = Tokenizer.load(path)
    assert loaded.encode("my mistress' eyes") == tokenizer.encode("my mistress' eyes")
