"""Batched evaluation: segments score every token once, each with its own state, close to the exact single stream."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_cli

from genseq import LanguageModel, ModelConfig, default_model_dir, from_pretrained
from genseq.data import TokenStream, open_source, tokenize
from genseq.errors import ConfigError
from genseq.evaluate import (IGNORED, Int8Scorer, Segment, _window, evaluate, passages, score_segments, segments,
                             summed_nll)

EOS = 3


@pytest.fixture(scope="module")
def trained(trained_run):
    model, tokenizer = from_pretrained(trained_run)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def valid_stream(trained, valid_file):
    return tokenize(open_source(str(valid_file)), trained[1])


def scored_positions(cut: list[Segment]) -> list[int]:
    return sorted(position for segment in cut for position in range(segment.first + 1, segment.end + 1))


@pytest.mark.parametrize("eos_id", [EOS, None])
def test_segments_score_every_token_after_the_first_exactly_once(eos_id):
    tokens = np.random.default_rng(0).integers(4, 50, 5000)
    tokens[[0, 700, 701, 2500, 4999]] = EOS
    cut = segments(tokens, eos_id, streams=8, min_length=100, context=16)
    assert scored_positions(cut) == list(range(1, len(tokens)))
    assert all(segment.end - segment.first <= 5000 // 8 + 1 for segment in cut)


def test_cuts_fall_at_document_ends_and_every_segment_but_the_first_reads_context():
    tokens = np.full(3001, 7)
    tokens[[0, 1000, 3000]] = EOS
    cut = segments(tokens, EOS, streams=4, min_length=100, context=16)
    assert 1000 in [segment.first for segment in cut]
    assert not any(segment.first < 1000 < segment.end for segment in cut)  # no segment scores across a document's end
    assert [segment.first - segment.start for segment in cut] == [0] + [16] * (len(cut) - 1)


def test_a_short_text_is_cut_into_fewer_segments_not_shorter_ones():
    cut = segments(np.full(601, 7), None, streams=128, min_length=256, context=16)
    assert len(cut) == 3 and min(s.end - s.first for s in cut) >= 200


def test_each_segment_carries_its_own_state(trained, valid_stream):
    model, tokens = trained[0], valid_stream.tokens
    cut = segments(tokens, EOS, streams=6, min_length=32, context=8)
    together = score_segments(model, tokens, cut, window=5)
    alone = sum(score_segments(model, tokens, [segment], window=64) for segment in cut)
    assert len(cut) >= 4
    assert together == pytest.approx(alone, rel=1e-5)


def test_the_batched_score_is_within_half_a_percent_of_the_exact_one(trained, valid_stream):
    batched = evaluate(trained[0], valid_stream, eos_id=trained[1].eos_id)
    exact = evaluate(trained[0], valid_stream, exact=True)
    assert batched["tokens"] == exact["tokens"] == len(valid_stream.tokens) - 1
    assert batched["nll"] == pytest.approx(exact["nll"], rel=5e-3)


def old_single_stream_nll(model, tokens, window=2048) -> float:
    """The evaluation loop as it was before batching, kept here as the reference of --exact."""
    nll, state = 0.0, None
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, window):
            chunk = torch.from_numpy(tokens[start : start + window + 1].astype("int64"))[None]
            logits, state = model(chunk[:, :-1], state)
            nll += F.cross_entropy(logits.float()[0], chunk[0, 1:], reduction="sum").item()
    return nll


def test_exact_mode_is_the_single_stream_path(trained, valid_stream):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=trained[1].vocab_size, embedding_size=16, hidden_size=16)).eval()
    long = TokenStream(np.tile(valid_stream.tokens, 3), valid_stream.words * 3, valid_stream.bytes * 3)
    assert evaluate(model, long, exact=True)["nll"] == old_single_stream_nll(model, long.tokens)
    assert evaluate(model, long, exact=True, window=100)["nll"] == old_single_stream_nll(model, long.tokens, 100)


def test_exact_flag_scores_one_stream(capsys, trained_run, trained, valid_stream, valid_file):
    code, out, _ = run_cli(capsys, "eval", "completion", "--model", trained_run, "--data", valid_file, "--exact", "--json")
    assert code == 0
    assert json.loads(out) == evaluate(trained[0], valid_stream, exact=True)


def test_eval_without_model_scores_the_embedded_default(capsys, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
                    "must be in want of a wife.\n")
    code, out, _ = run_cli(capsys, "eval", "completion", "--data", text, "--json")
    assert code == 0
    model, tokenizer = from_pretrained(default_model_dir())
    expected = evaluate(model, tokenize(open_source(str(text)), tokenizer), eos_id=tokenizer.eos_id,
                        unscored=tuple(tokenizer.styles.values()))  # its style labels, never predicted in a text
    assert json.loads(out) == pytest.approx(expected)


def test_only_scored_positions_reach_the_output_layer(trained, valid_stream, monkeypatch):
    model, tokens = trained[0], valid_stream.tokens
    cut = segments(tokens, EOS, streams=6, min_length=32, context=8)
    rows, logits = [], model.logits
    monkeypatch.setattr(model, "logits", lambda features: rows.append(len(features)) or logits(features))
    score_segments(model, tokens, cut, window=16)
    assert sum(rows) == len(tokens) - 1 < sum(segment.length for segment in cut)


def all_positions_nll(model, tokens, cut, window) -> float:
    """score_segments with logits at every position, context and padding included, and one cross_entropy a window."""
    nll, state = 0.0, None
    with torch.no_grad():
        for offset in range(0, max(segment.length for segment in cut), window):
            inputs, targets = _window(tokens, cut, offset, window)
            logits, state = model(inputs, state)  # (B, W, V)
            nll += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORED, reduction="sum").item()
    return nll


def test_scoring_only_scored_positions_changes_no_score(trained, valid_stream):
    model, tokens = trained[0], valid_stream.tokens
    cut = sorted(segments(tokens, EOS, streams=6, min_length=32, context=8), key=lambda s: s.length, reverse=True)
    assert score_segments(model, tokens, cut, window=16) == pytest.approx(all_positions_nll(model, tokens, cut, 16), rel=1e-6)


def test_nll_summed_a_few_rows_at_a_time_is_that_of_all_rows(monkeypatch):
    features, targets = torch.randn(1000, 16), torch.randint(0, 50, (1000,))
    output = torch.nn.Linear(16, 50)
    with torch.no_grad():
        whole = F.cross_entropy(output(features), targets, reduction="sum").item()
        monkeypatch.setattr("genseq.evaluate.ROWS", 64)
        assert summed_nll(output, features, targets) == pytest.approx(whole, rel=1e-5)


def test_int8_scorer_encodes_like_the_model(trained, valid_stream):
    model, ids = trained[0], torch.from_numpy(valid_stream.tokens[:240].astype(np.int64)).view(4, 60)
    with torch.no_grad():
        features, (h, c) = model.encode(ids)
        quantized, (h8, c8) = Int8Scorer(model).encode(ids)
    assert quantized.shape == features.shape and h8.shape == h.shape and c8.shape == c.shape
    assert (quantized - features).abs().max() < 0.05 * features.abs().max()


def test_int8_scores_within_half_a_percent_of_fp32(trained, valid_stream):
    fp32 = evaluate(trained[0], valid_stream, eos_id=EOS)
    int8 = evaluate(trained[0], valid_stream, eos_id=EOS, precision="int8")
    assert int8.keys() == fp32.keys() and int8["tokens"] == fp32["tokens"]
    assert int8["nll"] != fp32["nll"] and int8["nll"] == pytest.approx(fp32["nll"], rel=5e-3)


def test_int8_refuses_a_model_that_is_not_an_lstm(tokenizer):
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, cell="gru", embedding_size=8, hidden_size=8))
    with pytest.raises(ConfigError, match="LSTM models only"):
        Int8Scorer(model)


def test_precision_flag_int8_keeps_the_json_and_an_unknown_one_is_one_clear_error(capsys, trained_run, valid_file):
    code, out, _ = run_cli(capsys, "eval", "completion", "--model", trained_run, "--data", valid_file, "--json")
    code8, out8, _ = run_cli(capsys, "eval", "completion", "--model", trained_run, "--data", valid_file, "--json",
                             "--precision", "int8")
    assert code == code8 == 0 and json.loads(out8).keys() == json.loads(out).keys()
    code, _, err = run_cli(capsys, "eval", "completion", "--model", trained_run, "--data", valid_file, "--precision", "fp16")
    assert code == 2 and err.strip() == "genseq: error: evaluation precision must be one of fp32, int8, not 'fp16'"


def test_passages_score_every_token_after_the_first_once_each_after_the_prefix_alone():
    tokens = np.array([EOS, 10, 11, 12, 13, 14, EOS, 15, 16, EOS])
    laid, cut = passages(tokens, 4, (EOS, 99))
    assert laid.tolist() == [EOS, 99, 10, 11, 12, 13, EOS, 99, 14, EOS, 15, 16, EOS, 99, EOS]
    assert [laid[segment.start : segment.first + 1].tolist() for segment in cut] == [[EOS, 99]] * 3
    assert [laid[position] for position in scored_positions(cut)] == tokens[1:].tolist()


def test_a_passage_is_scored_as_if_it_were_the_whole_text(trained, valid_stream):
    model, tokens = trained[0], np.asarray(valid_stream.tokens[:200])
    by_passage = evaluate(model, TokenStream(tokens, 1, 1), passage=50, prefix=(EOS,))
    alone = sum(evaluate(model, TokenStream(np.concatenate([[EOS], tokens[1 + start : 51 + start]]), 1, 1),
                         exact=True)["nll"] for start in range(0, 199, 50))
    assert by_passage["tokens"] == 199 and by_passage["nll"] == pytest.approx(alone, rel=1e-4)
    with pytest.raises(ConfigError, match="choose one"):
        evaluate(model, TokenStream(tokens, 1, 1), exact=True, passage=50, prefix=(EOS,))


def test_passages_flag_scores_the_same_tokens_and_refuses_what_it_cannot_do(capsys, trained_run, valid_file):
    args = ("eval", "completion", "--model", trained_run, "--data", valid_file, "--json")
    whole, cold = (json.loads(run_cli(capsys, *args, *more)[1]) for more in ((), ("--passages", "32")))
    assert cold["tokens"] == whole["tokens"] and cold["nll"] > whole["nll"]  # no text before a passage to go on
    code, _, err = run_cli(capsys, *args, "--passages", "32", "--exact")
    assert code == 2 and "give one of them" in err
    code, _, err = run_cli(capsys, *args, "--passages", "0")
    assert code == 2 and "--passages must be a number of tokens >= 1, not 0" in err
