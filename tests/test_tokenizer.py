import pytest

from genseq import ConfigError, Tokenizer
from genseq.tokenizer import BOS_ID, EOS_ID, MAX_SENTENCE_BYTES, MIN_VOCAB_SIZE, PAD_ID, UNK_ID, split_long_line


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


# ---- lines longer than SentencePiece takes ------------------------------------------------
def test_a_one_line_corpus_longer_than_sentencepieces_limit_trains_with_one_warning(train_file):
    words = train_file.read_text().split()
    line = " ".join(words * 4)  # one line of about 100 KB, six times MAX_SENTENCE_BYTES
    assert len(line.encode()) > 6 * MAX_SENTENCE_BYTES
    with pytest.warns(UserWarning, match="the corpus has lines longer than 16384 bytes") as caught:
        tokenizer = Tokenizer.train([line, line], vocab_size=400)  # two texts, still one warning
    assert len(caught) == 1
    assert tokenizer.vocab_size == 400 and tokenizer.decode(tokenizer.encode("thee and thou")) == "thee and thou"


@pytest.mark.parametrize("line", [
    "word " * 10_000,
    "日本語の文章" * 5_000,  # no spaces: cut at the limit, between characters
    "x" + "🙂" * 10_000,
    ("a" * 9000 + " ") * 5,  # spaces only far before the limit: cut at the limit
])
def test_long_lines_are_cut_within_the_limit_at_spaces_and_never_inside_a_character(line):
    pieces = list(split_long_line(line, 1000))
    assert "".join(pieces) == line
    assert all(0 < len(piece.encode("utf-8")) <= 1000 for piece in pieces)
    if line.startswith("word"):
        assert all(piece.endswith(" ") for piece in pieces[:-1])


# ---- token_texts: the text each token adds, in one pass --------------------------------------
def _token_texts_by_prefixes(tokenizer, ids):
    """The former quadratic token_texts, kept as the reference: decode every prefix, take what it adds."""
    texts, previous = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end])
        texts.append(text[len(previous):] if text.startswith(previous) else text)
        previous = text
    return texts


@pytest.mark.parametrize("text", ["Hello world", " lead space", "  two", "a\n b\n\nc", "x ", "a  b", "\ttab", "\n\n", ""])
def test_token_texts_matches_decoding_every_prefix(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.token_texts(ids) == _token_texts_by_prefixes(tokenizer, ids)


def test_token_texts_matches_decoding_every_prefix_on_random_ascii_text_and_ids(tokenizer):
    import random

    rng = random.Random(0)
    alphabet = "abcdefghij klmnop\n\t  .,;!ABC"
    ascii_ids = [i for i in range(tokenizer.vocab_size)
                 if not tokenizer.sp.is_byte(i) or int(tokenizer.id_to_piece(i)[3:5], 16) < 0x80]
    for _ in range(100):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60)))
        ids = tokenizer.encode(text)
        assert tokenizer.token_texts(ids) == _token_texts_by_prefixes(tokenizer, ids), text
        ids = [rng.choice(ascii_ids) for _ in range(rng.randrange(1, 30))]  # specials and unknown included
        assert tokenizer.token_texts(ids) == _token_texts_by_prefixes(tokenizer, ids), ids


@pytest.mark.parametrize("text, characters", [
    ("日本語 ok", ["日", "本", "語"]), ("emoji 😀 x", ["😀"]), ("café\nnaïve", ["é", "ï"]),
])
def test_token_texts_give_a_byte_fallback_character_to_the_token_of_its_last_byte(tokenizer, text, characters):
    # Decoding prefixes gave U+FFFD for a character's first bytes and then repeated the whole
    # text so far; each character now appears once, on the token that completes it.
    ids = tokenizer.encode(text)
    texts = tokenizer.token_texts(ids)
    assert "".join(texts) == text == tokenizer.decode(ids)
    assert len(texts) == len(ids)
    for character in characters:
        assert texts.count(character) == 1


def test_token_texts_of_a_cut_character_end_as_decode_does(tokenizer):
    ids = tokenizer.encode("é")[:-1]  # the last byte of é cut off
    assert "".join(tokenizer.token_texts(ids)) == tokenizer.decode(ids) == "\ufffd"


def test_token_texts_of_a_long_text_take_one_pass(tokenizer):
    import time

    ids = tokenizer.encode("Shall I compare thee to a summer's day? 日本 " * 1000)  # ~45,000 characters
    started = time.perf_counter()
    texts = tokenizer.token_texts(ids)
    assert time.perf_counter() - started < 5  # decoding every prefix took minutes
    assert "".join(texts) == tokenizer.decode(ids)


# ---- character-level tokenizer -------------------------------------------------------------
@pytest.fixture(scope="module")
def char_tokenizer(train_file):
    return Tokenizer.train([train_file.read_text()], vocab_size=8000, model_type="char")


def test_a_char_tokenizer_gives_one_piece_per_character_up_to_the_corpus_characters(char_tokenizer, train_file):
    characters = set(train_file.read_text().replace("\n", "").replace(" ", "▁"))
    assert char_tokenizer.vocab_size <= MIN_VOCAB_SIZE - 1 + len(characters) + 1  # fewer pieces than 8000 asked
    text = "thee and thou"
    assert [char_tokenizer.id_to_piece(i) for i in char_tokenizer.encode(text)] == list("▁thee▁and▁thou")


@pytest.mark.parametrize("text", ["Shall I compare thee\nto a summer's day?", "unseen: 日本語 🙂", "", "  two  spaces "])
def test_a_char_tokenizer_decodes_what_it_encodes(char_tokenizer, text):
    assert char_tokenizer.decode(char_tokenizer.encode(text)) == text
    assert "".join(char_tokenizer.token_texts(char_tokenizer.encode(text))) == text


def test_a_char_tokenizers_vocabulary_caps_its_characters_and_spells_the_rest_in_bytes(train_file):
    small = Tokenizer.train([train_file.read_text()], vocab_size=MIN_VOCAB_SIZE + 4, model_type="char")
    assert small.vocab_size == MIN_VOCAB_SIZE + 4
    text = "Zany quixotic jokes"
    assert small.decode(small.encode(text)) == text and UNK_ID not in small.encode(text)


def test_a_char_tokenizer_is_saved_and_loaded_like_any_other(char_tokenizer, tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(char_tokenizer.to_bytes())
    assert Tokenizer.load(path).encode("my mistress") == char_tokenizer.encode("my mistress")


def test_a_vocabulary_below_the_minimum_is_refused_naming_it():
    with pytest.raises(ConfigError, match=f"vocab_size must be at least {MIN_VOCAB_SIZE}"):
        Tokenizer.train(["some text"], vocab_size=MIN_VOCAB_SIZE - 1, model_type="char")
