"""The sentiment task: the article's classifier, its training and scores, baselines, and the shipped model."""

import csv
import json
import random

import pytest
import torch

from genseq.cli import main
from genseq.plugins import get_task_class

from genseq_sentiment.model import SentimentConfig, SentimentModel, load_sentiment
from genseq_sentiment.train import Examples, bag_of_words_baseline, majority_baseline, scores

GOOD = ["good", "great", "lovely", "wonderful", "thanks", "love", "perfect", "friendly"]
BAD = ["bad", "awful", "late", "rude", "terrible", "hate", "delayed", "lost"]
FILLER = ["the", "flight", "crew", "was", "today", "my", "bag", "seat", "and", "very", "service", "again"]


def reviews(count: int, seed: int) -> list[tuple[str, int]]:
    """Short texts, 30% positive: filler words around one or two words of their sentiment."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = int(rng.random() < 0.3)
        words = rng.choices(FILLER, k=rng.randint(3, 8)) + rng.choices(GOOD if label else BAD, k=rng.randint(1, 2))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path, rows) -> str:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentiment")
    return write_csv(folder / "train.csv", reviews(600, 0)), write_csv(folder / "valid.csv", reviews(200, 1))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    assert main(["train", "sentiment", "--data", data[0], "--valid", data[1], "--out", str(out), "--vocab-size", "300",
                 "--epochs", "6", "--batch-size", "32", "--lr", "1e-2", "--no-progress"]) == 0
    return out


def test_scores_match_hand_computed_values():
    result = scores([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])  # TP 2, FP 1, FN 1
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert scores([0, 0], [1, 0])["f1"] == 0.0


def test_a_texts_probability_ignores_the_padding_of_longer_texts_in_its_batch(tokenizer):
    torch.manual_seed(0)
    model = SentimentModel(SentimentConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=12), tokenizer).eval()
    alone = model.classify(["Shall I compare thee"])[0]
    together = model.classify(["Shall I compare thee", "to a summer's day? Thou art more lovely and more temperate"])[0]
    assert together["positive"] == pytest.approx(alone["positive"], abs=1e-6)
    assert "".join(t for t, _ in alone["tokens"]) == "Shall I compare thee"
    assert alone["tokens"][-1][1] == pytest.approx(alone["positive"])


def test_a_tiny_model_trained_on_a_slice_beats_the_majority_class(trained, data, capsys):
    assert main(["eval", "sentiment", "--model", str(trained), "--data", data[1], "--baselines", data[0], "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"]["accuracy"] > metrics["majority_class"]["accuracy"] + 0.1
    assert metrics["model"]["f1"] > 0.8 and metrics["majority_class"]["f1"] == 0.0
    assert metrics["bag_of_words_logistic_regression"]["accuracy"] > 0.9  # the words decide: an easy set for it
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["split"] == "valid" for r in records) == 6 and (trained / "loss.png").exists()


def test_baselines_on_a_known_case():
    train = Examples(["good day", "good crew", "bad day", "bad seat", "bad food"], [1, 1, 0, 0, 0])
    valid = Examples(["good food", "bad crew"], [1, 0])
    assert majority_baseline(train, valid) == scores([0, 0], [1, 0])
    assert bag_of_words_baseline(train, valid)["accuracy"] == 1.0


def test_the_task_gives_a_label_the_opinion_picture_and_token_probabilities(trained):
    task = get_task_class("sentiment")(model=str(trained))
    result = task.run({"text": "the crew was wonderful and friendly"})
    assert result["sentiment"]["label"] == "positive" and result["sentiment"]["prob"] > 0.5
    assert result["opinion"].size[0] > 300 and len(result["tokens"]) >= 6
    negative = task.run({"text": "my bag was lost and the flight delayed"}, threshold=0.5)
    assert negative["sentiment"] == {"label": "negative", "prob": pytest.approx(1 - negative["positive"])}
    assert set(task.to_json([{}], [result])) == {"text", "sentiment", "positive", "tokens"}


def test_the_shipped_model_loads_offline_and_reads_obvious_tweets(capsys):
    model = load_sentiment()
    assert model.config.embedding_size == 32 and model.config.hidden_size == 100 and model.config.cell == "lstm"
    assert main(["generate", "--task", "sentiment", "--text", "Thank you so much, the crew was wonderful!",
                 "--text", "Stuck on the tarmac for three hours and no one tells us anything", "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)
    assert first["sentiment"]["label"] == "positive" and second["sentiment"]["label"] == "negative"


def test_an_interrupted_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(data, tmp_path, monkeypatch, capsys):
    from genseq_sentiment.train import SentimentTrainer

    flags = ["--data", data[0], "--valid", data[1], "--vocab-size", "300", "--epochs", "3", "--batch-size", "32",
             "--lr", "1e-2", "--dropout", "0.3", "--no-progress"]
    assert main(["train", "sentiment", *flags, "--out", str(tmp_path / "whole")]) == 0
    step = SentimentTrainer.train_step

    def stop_at_step_25(trainer, rows):  # mid-way through the second epoch (19 steps each)
        loss = step(trainer, rows)
        if trainer.progress.step == 25:
            trainer.request_stop()
        return loss

    monkeypatch.setattr(SentimentTrainer, "train_step", stop_at_step_25)
    assert main(["train", "sentiment", *flags, "--out", str(tmp_path / "split")]) == 130
    assert f"continue with: genseq train sentiment --data {data[0]} --valid {data[1]} --resume" in capsys.readouterr().err
    monkeypatch.setattr(SentimentTrainer, "train_step", step)
    data_flags = flags[:4] + ["--no-progress"]
    assert main(["train", "sentiment", *data_flags, "--resume", str(tmp_path / "split")]) == 0
    whole, split = load_sentiment(tmp_path / "whole" / "last"), load_sentiment(tmp_path / "split" / "last")
    for (name, a), b in zip(whole.state_dict().items(), split.state_dict().values()):
        assert torch.equal(a, b), name
    records = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [
        json.loads(line)["step"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]


def test_the_sentiment_trainer_keeps_a_time_budget_like_every_genseq_trainer(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sentiment", "--data", data[0], "--valid", data[1], "--out", str(out), "--vocab-size", "300",
                 "--epochs", "1000", "--max-time", "1", "--no-progress"]) == 0
    progress = json.loads((out / "last" / "training_state.json").read_text())["progress"]
    assert progress["finished"] and progress["elapsed"] >= 1 and progress["epoch"] < 1000
    assert progress["last_validation_step"] == progress["step"]  # a final validation where the budget ended
    assert f"trained {progress['step']} steps; best validation F1" in capsys.readouterr().err


@pytest.mark.parametrize("rows,flags,message", [
    ([("fine", 2)], [], "row 1 of .* has label 2; labels are 0 \\(negative\\) and 1 \\(positive\\)"),
    ([("fine", 1)], ["--label-column", "stars"], "has no column 'stars'"),
])
def test_bad_training_data_is_one_sentence(tmp_path, capsys, rows, flags, message):
    import re

    path = write_csv(tmp_path / "bad.csv", rows)
    assert main(["train", "sentiment", "--data", path, "--valid", path, "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1


def test_plain_text_and_an_empty_text_are_refused_in_one_sentence(tmp_path, capsys, train_file):
    assert main(["train", "sentiment", "--data", str(train_file), "--valid", str(train_file),
                 "--out", str(tmp_path / "run")]) == 2
    assert "sentiment data is a table with columns text and label" in capsys.readouterr().err
    assert main(["generate", "--task", "sentiment", "--text", "   "]) == 2
    assert "there is no text to classify" in capsys.readouterr().err


def test_a_character_level_tokenizer_is_trained_with_tokenizer_type_char(data, tmp_path, capsys):
    from genseq import Tokenizer

    out = tmp_path / "run"
    assert main(["train", "sentiment", "--data", data[0], "--valid", data[1], "--out", str(out), "--tokenizer-type", "char",
                 "--epochs", "1", "--max-steps", "2", "--no-progress"]) == 0
    tokenizer = Tokenizer.load(out / "tokenizer.model")
    assert all(len(tokenizer.id_to_piece(i).lstrip("▁")) <= 1 for i in tokenizer.encode("a great flight"))
