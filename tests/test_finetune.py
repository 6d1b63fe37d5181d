"""Fine-tuning (`genseq train completion --init`): the checkpoint's tokenizer and architecture are kept, the run
records where it started, fine-tuning defaults apply, and an interrupted fine-tune resumes exactly."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from genseq import from_pretrained
from genseq.cli import main
from genseq.runs import RunLoop
from genseq.train import FINE_TUNING


def fine_tune(init, train_file, valid_file, out, *flags):
    return main(["train", "completion", "--init", str(init), "--data", str(train_file), "--valid", str(valid_file),
                 "--out", str(out), "--batch-size", "4", "--bptt", "8", "--no-progress", *flags])


@pytest.mark.parametrize("flags", [["--hidden-size", "8"], ["--layers", "1"], ["--vocab-size", "500"],
                                   ["--tokenizer-type", "bpe"], ["--cell", "gru", "--tie-weights"]])
def test_a_fine_tune_refuses_options_that_change_the_architecture_or_tokenizer(trained_run, train_file, valid_file,
                                                                                tmp_path, capsys, flags):
    code = fine_tune(trained_run, train_file, valid_file, tmp_path / "tuned", "--max-steps", "2", *flags)
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert f"{flags[0]}" in error and "would change the architecture or tokenizer of --init" in error
    assert not (tmp_path / "tuned").exists()


def test_a_fine_tune_keeps_the_tokenizer_and_model_and_records_its_origin(trained_run, train_file, valid_file,
                                                                           tmp_path, capsys):
    out = tmp_path / "tuned"
    assert fine_tune(trained_run, train_file, valid_file, out, "--max-steps", "6", "--dropout", "0.3") == 0
    error = capsys.readouterr().err
    assert f"fine-tuning {trained_run} with --lr 0.0005, --patience 3" in error
    assert "chosen for this budget" in error and "--warmup-steps" in error and "--hidden-size" not in error
    config = json.loads((out / "config.json").read_text())
    original = json.loads((trained_run / "config.json").read_text())
    assert config["init"] == {"from": str(trained_run.resolve()), "genseq": original["versions"]["genseq"],
                              "sha256": hashlib.sha256((trained_run / "model.safetensors").read_bytes()).hexdigest()}
    assert config["model_config"] == {**original["model_config"], "embedding_dropout": 0.3, "layer_dropout": 0.3,
                                      "output_dropout": 0.3}
    assert (out / "tokenizer.model").read_bytes() == (trained_run / "tokenizer.model").read_bytes()
    assert config["training_config"]["lr"] == FINE_TUNING["lr"] and config["training_config"]["max_time"] is None
    tuned, _ = from_pretrained(out / "last")
    start, _ = from_pretrained(trained_run)
    assert any(not a.equal(b) for a, b in zip(tuned.state_dict().values(), start.state_dict().values()))


def test_a_fine_tunes_best_model_is_the_checkpoint_it_starts_from_until_a_step_beats_it(trained_run, train_file,
                                                                                         valid_file, tmp_path):
    out = tmp_path / "tuned"
    assert fine_tune(trained_run, train_file, valid_file, out, "--max-steps", "2", "--lr", "0.5") == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0], [record for record in records if record["split"] == "valid"][-1]
    assert (first["step"], first["split"], first["best"]) == (0, "valid", True)
    assert last["step"] == 2 and not last["best"]  # a learning rate of 0.5 spoils the model
    assert (out / "model.safetensors").read_bytes() == (trained_run / "model.safetensors").read_bytes()


def test_a_fine_tune_from_the_embedded_default_records_default_and_its_hash(train_file, valid_file, tmp_path, capsys):
    from genseq import default_model_dir

    out = tmp_path / "tuned"
    assert fine_tune("default", train_file, valid_file, out, "--max-steps", "2") == 0
    assert "fine-tuning default with" in capsys.readouterr().err
    origin = json.loads((out / "config.json").read_text())["init"]
    assert origin["from"] == "default"
    assert origin["sha256"] == hashlib.sha256((default_model_dir() / "model.safetensors").read_bytes()).hexdigest()


def test_a_fine_tune_without_a_step_limit_gets_the_time_budget(trained_run, train_file, valid_file, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setitem(FINE_TUNING, "max_time", 0.5)  # seconds, so that the test is short
    assert fine_tune(trained_run, train_file, valid_file, tmp_path / "tuned") == 0
    assert "--max-time 0.5" in capsys.readouterr().err
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["training_config"]["max_time"] == 0.5


def test_an_interrupted_and_resumed_fine_tune_ends_with_the_weights_of_an_uninterrupted_one(
        trained_run, train_file, valid_file, tmp_path, monkeypatch, capsys):
    flags = ["--max-steps", "14", "--eval-every", "5", "--lr", "3e-3"]
    assert fine_tune(trained_run, train_file, valid_file, tmp_path / "straight", *flags) == 0

    original_step = RunLoop.train_step

    def step_then_stop(self, batch):
        loss = original_step(self, batch)
        if self.progress.step == 7:  # between validations
            self.request_stop()
        return loss

    monkeypatch.setattr(RunLoop, "train_step", step_then_stop)
    assert fine_tune(trained_run, train_file, valid_file, tmp_path / "resumed", *flags) == 130
    monkeypatch.setattr(RunLoop, "train_step", original_step)
    assert f"--resume {tmp_path / 'resumed'}" in capsys.readouterr().err
    assert main(["train", "completion", "--data", str(train_file), "--valid", str(valid_file),
                 "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    for name in ("model.safetensors", "last/model.safetensors"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["init"]["from"] == str(trained_run.resolve())


def test_init_and_resume_together_are_refused(trained_run, train_file, valid_file, tmp_path, capsys):
    code = main(["train", "completion", "--init", str(trained_run), "--data", str(train_file),
                 "--resume", str(trained_run)])
    assert code == 2
    assert "--init starts a new fine-tune and --resume continues a run from its own checkpoint" in capsys.readouterr().err


def test_a_fine_tune_adds_the_labels_its_checkpoint_has_no_style_for(trained_run, train_file, valid_file, tmp_path,
                                                                     capsys):
    for split, source in (("data", train_file), ("valid", valid_file)):
        (tmp_path / split / "gothic").mkdir(parents=True)
        (tmp_path / split / "gothic" / "a.txt").write_text(source.read_text())
    out = tmp_path / "tuned"
    assert main(["train", "completion", "--init", str(trained_run), "--data", str(tmp_path / "data"),
                 "--labels-from", "folders", "--valid", str(tmp_path / "valid"), "--out", str(out), "--batch-size", "4",
                 "--bptt", "8", "--max-steps", "3", "--no-progress"]) == 0
    start, start_tokenizer = from_pretrained(trained_run)
    tuned, tokenizer = from_pretrained(out / "last")
    assert tokenizer.styles == {"gothic": start_tokenizer.vocab_size}  # numbered after the checkpoint's pieces
    text = train_file.read_text()[:500]
    assert tokenizer.encode(text) == start_tokenizer.encode(text)
    assert tuned.config.vocab_size == start.config.vocab_size + 1
    config = json.loads((out / "config.json").read_text())
    assert config["labels"] == ["gothic"] and config["init"]["labels_added"] == ["gothic"]
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "The", "--style", "gothic", "--max-new-tokens", "3",
                 "--seed", "1"]) == 0


def test_a_grown_vocabulary_keeps_every_weight_and_starts_new_ids_at_the_mean(trained_run):
    from genseq.model import with_vocabulary

    model, _ = from_pretrained(trained_run)
    grown = with_vocabulary(model, model.config.vocab_size + 2)
    old, new = model.state_dict(), grown.state_dict()
    for name, tensor in old.items():
        if name in ("embedding.weight", "output.weight", "output.bias"):
            assert new[name][: len(tensor)].equal(tensor)
            assert torch.allclose(new[name][len(tensor):], tensor.mean(dim=0).expand(2, *tensor.shape[1:]))
        else:
            assert new[name].equal(tensor), name
    ids = torch.tensor([[5, 6, 7]])
    model.eval(), grown.eval()
    logits, _ = model(ids)
    assert torch.allclose(grown(ids)[0][..., : model.config.vocab_size], logits, atol=1e-6)


def test_a_fine_tune_with_fixed_defaults_takes_the_fixed_warm_up_and_validations(trained_run, train_file,
                                                                                 valid_file, tmp_path, capsys):
    out = tmp_path / "tuned"
    assert fine_tune(trained_run, train_file, valid_file, out, "--max-steps", "40", "--fixed-defaults") == 0
    error = capsys.readouterr().err
    assert "--warmup-steps 4, --eval-every 100" in error and "chosen for this budget" not in error
    config = json.loads((out / "config.json").read_text())["training_config"]
    assert (config["warmup_steps"], config["eval_every"], config["budget_rule"]) == (4, 100, None)
