"""The gate inspector: an instrumented LSTM equal to nn.LSTM, and `genseq inspect`."""

import json

import pytest
import torch

from genseq import LanguageModel, ModelConfig, save_pretrained
from genseq.cli import main
from genseq.gates import QUANTITIES, inspect_text, instrumented_lstm_layer


def test_the_instrumented_layer_reproduces_nn_lstm():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 7, num_layers=2).eval()
    inputs = torch.randn(9, 5)
    h0, c0 = torch.randn(2, 7), torch.randn(2, 7)
    expected, (h_n, c_n) = lstm(inputs[:, None], (h0[:, None], c0[:, None]))
    first = instrumented_lstm_layer(lstm, 0, inputs, (h0[0], c0[0]))
    second = instrumented_lstm_layer(lstm, 1, first["hidden"], (h0[1], c0[1]))
    assert torch.allclose(second["hidden"], expected[:, 0], atol=1e-5)
    assert torch.allclose(torch.stack([first["cell"][-1], second["cell"][-1]]), c_n[:, 0], atol=1e-5)
    # the recorded gates are the ones the equations use
    assert torch.allclose(first["cell"][1:], first["forget_gate"][1:] * first["cell"][:-1]
                          + first["input_gate"][1:] * first["candidate"][1:], atol=1e-6)
    assert torch.allclose(first["hidden"], first["output_gate"] * torch.tanh(first["cell"]), atol=1e-6)
    for name in ("input_gate", "forget_gate", "output_gate"):
        assert ((first[name] > 0) & (first[name] < 1)).all()


def test_inspecting_a_language_model_matches_its_own_forward_pass(tokenizer):
    torch.manual_seed(1)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=24,
                                      num_layers=2, projection_size=0, tie_weights=False)).eval()
    text = "Shall I compare thee to a summer's day?"
    inspection = inspect_text(model, tokenizer, text)
    ids = torch.tensor([[tokenizer.eos_id, *tokenizer.encode(text)]])
    features, (h, c) = model.encode(ids)
    assert len(inspection.tokens) == ids.size(1) - 1 and "".join(inspection.tokens) == text
    assert torch.allclose(inspection.layers[1]["hidden"], features[0, 1:], atol=1e-5)
    assert torch.allclose(inspection.layers[0]["cell"][-1], c[0, 0], atol=1e-5)
    assert all(inspection.layers[0][name].shape == (len(inspection.tokens), 24) for name in QUANTITIES)
    moving = inspection.moving_units(1, 5)
    cell = inspection.layers[1]["cell"]
    change = torch.cat([cell[:1], cell.diff(dim=0)]).abs().sum(0)
    assert change[moving[0]] == change.max() and len(set(moving)) == 5


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory, tokenizer):
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("gates") / "model"
    save_pretrained(path, LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=24)),
                    tokenizer)
    return path


def test_inspect_command_prints_json_and_writes_the_picture(lstm_run, tmp_path, capsys):
    out = tmp_path / "gates.png"
    assert main(["inspect", "--model", str(lstm_run), "--prompt", "To be, or not", "--json", "--out", str(out),
                 "--top", "3"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [layer["layer"] for layer in document["layers"]] == [0, 1]
    tokens = len(document["tokens"])
    assert len(document["layers"][1]["forget_gate"]) == tokens and len(document["layers"][1]["forget_gate"][0]) == 24
    assert len(document["layers"][0]["moving_units"]) == 3
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_command_prints_a_table_for_one_layer(lstm_run, capsys):
    assert main(["inspect", "--model", str(lstm_run), "--prompt", "To be", "--layer", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("layer 0 of 2") and "forget_gate" in out and "units whose cell state moves most" in out


@pytest.mark.parametrize("argv,message", [
    (["--prompt", ""], "there is no text to inspect"),
    (["--prompt", "x", "--layer", "2"], "--layer must be between 0 and 1"),
    (["--prompt", "x", "--out", "/nonexistent/dir/g.png"], "cannot write /nonexistent/dir/g.png"),
])
def test_inspect_mistakes_are_one_sentence(lstm_run, capsys, argv, message):
    assert main(["inspect", "--model", str(lstm_run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_gru_model_is_refused_in_one_sentence(tmp_path, tokenizer, capsys):
    save_pretrained(tmp_path / "gru", LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16,
                                                                hidden_size=16, cell="gru")), tokenizer)
    assert main(["inspect", "--model", str(tmp_path / "gru"), "--prompt", "x"]) == 2
    assert "the gate inspector reads LSTMs; this model's cell is gru" in capsys.readouterr().err


def test_a_long_text_is_read_up_to_max_tokens_and_the_inspection_says_so(tokenizer):
    from genseq.gates import MAX_TOKENS

    torch.manual_seed(3)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=24)).eval()
    text = "Shall I compare thee to a summer's day? " * 40
    total = len(tokenizer.encode(text))
    whole = inspect_text(model, tokenizer, text, max_tokens=total)
    cut = inspect_text(model, tokenizer, text, max_tokens=12)
    assert len(cut.tokens) == 12 and cut.tokens == whole.tokens[:12] and cut.text_tokens == total
    assert torch.equal(cut.layers[1]["cell"], whole.layers[1]["cell"][:12])  # an LSTM's past does not depend on its future
    assert cut.truncation_note() == f"the text has {total} tokens; only the first 12 were read and are shown"
    assert whole.truncation_note() is None and cut.to_json()["text_tokens"] == total
    assert len(inspect_text(model, tokenizer, text * 3).tokens) == MAX_TOKENS < len(tokenizer.encode(text * 3))


def test_inspect_command_reads_a_long_prompt_up_to_max_tokens_with_a_note(lstm_run, capsys):
    prompt = "To be, or not to be, that is the question. " * 500  # about 20,000 characters
    assert main(["inspect", "--model", str(lstm_run), "--prompt", prompt, "--max-tokens", "20", "--layer", "0"]) == 0
    captured = capsys.readouterr()
    assert "only the first 20 were read and are shown (--max-tokens reads more)" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out.startswith("layer 0 of 2, 20 tokens") and len(captured.out.splitlines()) == 2 + 20 + 1
    assert main(["inspect", "--model", str(lstm_run), "--prompt", prompt, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["tokens"]) == 300 < document["text_tokens"]


# ---- the gates task (the web app's gates tab) --------------------------------------------------
def test_the_gates_task_pictures_one_layer_and_lists_its_most_moving_units(lstm_run):
    from genseq_lab import GatesTask

    result = GatesTask(model=str(lstm_run)).run({"text": "To be, or not to be"}, layer=0, top=3)
    assert result["picture"].width > 800 and result["layer"] == 0 and len(result["units"]) == 3
    assert all(unit["lowest"] <= unit["highest"] for unit in result["units"])
    assert result["summary"].startswith(f"{len(result['tokens'])} tokens, layer 0.")
    document = json.loads(json.dumps(GatesTask().to_json([{}], [result])))  # no picture in the JSON
    assert set(document) == {"summary", "layer", "tokens", "text_tokens", "units"}


def test_the_gates_task_shows_the_last_layer_by_default_and_refuses_one_the_model_lacks(lstm_run):
    from genseq import ConfigError
    from genseq_lab import GatesTask

    task = GatesTask(model=str(lstm_run))
    assert task.run({"text": "To be"})["layer"] == 1
    with pytest.raises(ConfigError, match="option layer must be between 0 and 1 for this 2-layer model, not 2"):
        task.run({"text": "To be"}, layer=2)


def test_generate_runs_the_gates_task_with_its_own_flags(lstm_run, capsys):
    assert main(["generate", "--task", "gates", "--model", str(lstm_run), "--text", "To be, or not", "--layer", "0",
                 "--top", "2", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["layer"] == 0 and len(document["units"]) == 2


# ---- the picture ---------------------------------------------------------------------------------
def test_every_token_is_named_until_the_labels_would_crowd_then_every_kth():
    from genseq.gates import MAX_LABELS, token_ticks

    assert token_ticks(["To", " be", "\n"]) == ([0, 1, 2], ["To", " be", "\\n"])  # a newline shows as \n
    positions, labels = token_ticks([f"t{index}" for index in range(300)])
    assert len(positions) <= MAX_LABELS and positions[:2] == [0, 6] and labels[1] == "t6"


def test_the_gates_picture_leaves_the_top_clear_and_its_height_bounded(lstm_run, tokenizer):
    import io

    from PIL import Image

    from genseq import from_pretrained
    from genseq.figures import BADGE_MARGIN
    from genseq.gates import heatmap_png

    model, _ = from_pretrained(str(lstm_run))
    short, long = (Image.open(io.BytesIO(heatmap_png(inspect_text(model, tokenizer, text), 1))).convert("L")
                   for text in ("To be, or not to be", "To be, or not to be. " * 60))
    assert short.crop((0, 0, short.width, int(BADGE_MARGIN * 100))).getextrema() == (255, 255)  # 100 dpi
    assert short.width == long.width == 900 and short.height < long.height <= 2000
