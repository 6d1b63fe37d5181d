"""Style labels: from folders or a dataset column to control tokens, through training (with --style-rows, rows
that read a label as a prompt does) and the checkpoint, to `genseq generate --style`, suggestions, evaluation and
`genseq tasks --json`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genseq import ConfigError, DataError, Tokenizer, from_pretrained
from genseq.cli import main
from genseq.data import LABEL_EVERY, ContiguousBatches, StyleWindows, iter_texts, open_source, tokenize
from genseq.evaluate import evaluate
from genseq.generation import GenerationConfig, generate, generate_ids, stream
from genseq.runs import RunLoop


@pytest.fixture(scope="session")
def corpora(tmp_path_factory, train_file):
    """text/{plain,shout}/{train,valid}/*.txt: the sonnets as written and in capitals, two files per split each."""
    root = tmp_path_factory.mktemp("corpora") / "text"
    lines = train_file.read_text().splitlines()
    quarter = len(lines) // 4
    for label, change in (("plain", str), ("shout", str.upper)):
        for split, parts in (("train", (lines[:quarter], lines[quarter : 2 * quarter])), ("valid", (lines[-80:-40], lines[-40:]))):
            folder = root / label / split
            folder.mkdir(parents=True)
            for index, part in enumerate(parts):
                (folder / f"{index}.txt").write_text("\n".join(map(change, part)) + "\n")
    return root


@pytest.fixture(scope="session")
def labelled_tokenizer(corpora) -> Tokenizer:
    return Tokenizer.train(iter_texts(open_source(str(corpora))), vocab_size=400, styles=["plain", "shout"])


@pytest.fixture(scope="session")
def labelled_run(tmp_path_factory, corpora):
    """A tiny run of `genseq train completion --labels-from folders` on the two corpora."""
    out = tmp_path_factory.mktemp("labelled") / "run"
    code = main(["train", "completion", "--data", f"{corpora}/*/train", "--valid", f"{corpora}/*/valid",
                 "--labels-from", "folders", "--out", str(out), "--vocab-size", "400", "--embedding-size", "16",
                 "--hidden-size", "24", "--batch-size", "4", "--bptt", "16", "--max-steps", "20", "--no-progress"])
    assert code == 0
    return out


def test_a_files_label_is_its_first_folder_below_the_fixed_part_of_data(corpora):
    by_glob = open_source(f"{corpora}/*/train", labels_from="folders")
    by_folder = open_source(str(corpora), labels_from="folders")
    assert by_glob.labels == ["plain", "plain", "shout", "shout"]
    assert by_glob.label_names() == by_folder.label_names() == ["plain", "shout"]
    assert len(by_folder.labels) == len(by_folder.paths) == 8


def test_a_file_outside_any_label_folder_is_refused_in_one_sentence(corpora):
    with pytest.raises(DataError, match="not inside a label folder: .* first folder below"):
        open_source(str(corpora / "plain" / "train" / "0.txt"), labels_from="folders")


def test_label_flags_that_do_not_fit_the_source_are_refused(corpora, tmp_path):
    with pytest.raises(ConfigError, match="no columns: use --labels-from folders"):
        open_source(str(corpora), label_column="style")
    (tmp_path / "rows.csv").write_text("text,style\nhello there,a\n")
    with pytest.raises(ConfigError, match="dataset, whose labels come from a column"):
        open_source(str(tmp_path / "rows.csv"), labels_from="folders")


def test_a_style_is_one_control_id_that_text_never_produces_and_decoding_leaves_out(labelled_tokenizer):
    tokenizer = labelled_tokenizer
    plain = tokenizer.styles["plain"]
    assert set(tokenizer.styles) == {"plain", "shout"}
    assert plain not in tokenizer.encode("<style:plain> and <style:shout>")
    words = tokenizer.encode("The world is")
    assert tokenizer.decode([plain, *words]) == tokenizer.decode(words[:1] + [plain] + words[1:]) == "The world is"
    assert "".join(tokenizer.token_texts([plain, *words])) == "The world is"


def test_the_label_token_starts_every_document_of_its_label_and_recurs_in_training_batches(labelled_tokenizer, corpora):
    tokenizer = labelled_tokenizer
    source = open_source(f"{corpora}/*/train", labels_from="folders")
    tokens = np.asarray(tokenize(source, tokenizer).tokens)
    starts = np.flatnonzero(tokens[:-1] == tokenizer.eos_id) + 1
    assert [int(tokens[start]) for start in starts] == [tokenizer.styles[label] for label in source.labels]
    labels = np.isin(tokens, list(tokenizer.styles.values()))
    gaps = np.diff(np.flatnonzero(labels))
    assert labels.sum() > len(source.paths) and gaps.max() <= LABEL_EVERY + 40  # repeats at word starts, 256 apart
    batch, _ = ContiguousBatches(tokenize(source, tokenizer), 4, 16).get_batch(0)
    assert int(batch[0, 1]) == tokenizer.styles["plain"]  # row 0: [EOS] <style:plain> ...
    assert tokenizer.decode(tokens[1:200]) == tokenizer.decode(tokenize(open_source(f"{corpora}/*/train"), tokenizer).tokens[1:199])


def test_labels_round_trip_through_the_checkpoint(labelled_run):
    config = json.loads((labelled_run / "config.json").read_text())
    assert config["labels"] == ["plain", "shout"]
    _, tokenizer = from_pretrained(labelled_run)
    assert list(tokenizer.styles) == ["plain", "shout"]
    assert json.loads((labelled_run / "last" / "config.json").read_text())["labels"] == ["plain", "shout"]


def test_a_style_starts_the_prompt_with_its_token_and_bans_the_others(labelled_run):
    model, tokenizer = from_pretrained(labelled_run)
    config = GenerationConfig(max_new_tokens=12, temperature=0)
    prompt = tokenizer.encode("Thy")
    styled = generate(model, tokenizer, "Thy", config, style="shout")[0]
    expected = generate_ids(model, [[tokenizer.styles["shout"], *prompt]], config.updated(
        banned_token_ids=(tokenizer.styles["plain"],)), tokenizer.eos_id)[0][0]
    assert styled.tokens == expected.tokens
    assert "<style" not in styled.text
    streamed = stream(model, tokenizer, "Thy", config, style="shout")
    assert "".join(streamed) == styled.text and streamed.completion.tokens == styled.tokens


def test_style_of_the_completion_task_and_its_errors(labelled_run, untrained_checkpoint, capsys):
    from genseq_completion.task import CompletionTask

    task = CompletionTask(model=str(labelled_run))
    assert task.run({"prompt": "Thy"}, style="plain", max_new_tokens=4, seed=1)["text"] is not None
    assert len(task.run({"prompt": "Thy b"}, style="shout", suggest=3)["suggestions"]) == 3
    with pytest.raises(ConfigError, match="has no style 'gothic'; its styles are plain, shout"):
        task.run({"prompt": "Thy"}, style="gothic")
    with pytest.raises(ConfigError, match="has no style 'gothic'; its styles are plain, shout"):
        task.run({"prompt": "Thy"}, style="gothic", suggest=3)
    code = main(["generate", "--model", untrained_checkpoint, "--prompt", "Thy", "--style", "plain"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "style 'plain' cannot be used: this model was trained without style labels" in error


def test_evaluation_reads_a_style_but_never_scores_its_token(labelled_run, corpora, capsys):
    model, tokenizer = from_pretrained(labelled_run)
    valid = open_source(f"{corpora}/shout/valid")
    own, none = tokenize(valid, tokenizer, style="shout"), tokenize(valid, tokenizer)
    scored = evaluate(model, own, eos_id=tokenizer.eos_id, unscored=tuple(tokenizer.styles.values()))
    assert scored["tokens"] == len(none.tokens) - 1  # the label's tokens are read, not counted
    exact = evaluate(model, own, exact=True, unscored=tuple(tokenizer.styles.values()))
    assert exact["nll"] == pytest.approx(scored["nll"], rel=0.01)
    assert main(["eval", "completion", "--model", str(labelled_run), "--data", f"{corpora}/shout/valid",
                 "--style", "shout", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == scored["tokens"]
    assert main(["eval", "completion", "--model", str(labelled_run), "--data", f"{corpora}/shout/valid",
                 "--style", "gothic"]) == 2
    assert "its styles are plain, shout" in capsys.readouterr().err


def test_evaluation_gives_a_style_once_at_each_documents_start_as_a_prompt_has_it(labelled_run, corpora, capsys):
    model, tokenizer = from_pretrained(labelled_run)
    text = open_source(f"{corpora}/plain/train")  # two documents of several hundred tokens
    once = np.asarray(tokenize(text, tokenizer, style="plain", label_repeats=False).tokens)
    starts = np.flatnonzero(once[:-1] == tokenizer.eos_id) + 1
    assert np.flatnonzero(once == tokenizer.styles["plain"]).tolist() == starts.tolist()
    repeated = np.asarray(tokenize(text, tokenizer, style="plain").tokens)
    assert (repeated == tokenizer.styles["plain"]).sum() > len(starts)  # training's repeats, left out here
    unscored = tuple(tokenizer.styles.values())
    expected = evaluate(model, tokenize(text, tokenizer, style="plain", label_repeats=False),
                        eos_id=tokenizer.eos_id, unscored=unscored)
    assert main(["eval", "completion", "--model", str(labelled_run), "--data", f"{corpora}/plain/train",
                 "--style", "plain", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nll"] == pytest.approx(expected["nll"], rel=1e-6)
    plain, shout = tokenizer.styles["plain"], tokenizer.styles["shout"]
    unlabelled = tokenize(text, tokenizer)
    for style, prefix in (("plain", (tokenizer.eos_id, plain)), ("shout", (tokenizer.eos_id, shout)), (None, (tokenizer.eos_id,))):
        expected = evaluate(model, unlabelled, passage=20, prefix=prefix, unscored=unscored)  # the label before each
        assert main(["eval", "completion", "--model", str(labelled_run), "--data", f"{corpora}/plain/train",
                     "--passages", "20", "--json", *(["--style", style] if style else [])]) == 0
        assert json.loads(capsys.readouterr().out)["nll"] == pytest.approx(expected["nll"], rel=1e-6)


def test_tasks_json_lists_the_default_models_labels(labelled_run, monkeypatch, capsys):
    from genseq_completion.task import CompletionTask

    monkeypatch.setattr(CompletionTask, "default_model_dir", classmethod(lambda cls: str(labelled_run)))
    assert main(["tasks", "--json"]) == 0
    tasks = {task["name"]: task for task in json.loads(capsys.readouterr().out)["tasks"]}
    assert tasks["completion"]["labels"] == ["plain", "shout"]
    assert all(task["labels"] == [] for name, task in tasks.items() if name != "completion")


def test_a_dataset_column_labels_its_rows(tmp_path, labelled_tokenizer):
    (tmp_path / "rows.csv").write_text("text,style\nThe world is,plain\nTHE WORLD IS,shout\nno label here,\n")
    source = open_source(str(tmp_path / "rows.csv"), label_column="style")
    assert source.label_names() == ["plain", "shout"]
    tokens = tokenize(source, labelled_tokenizer).tokens
    starts = np.flatnonzero(np.asarray(tokens[:-1]) == labelled_tokenizer.eos_id) + 1
    styles = labelled_tokenizer.styles
    assert [int(tokens[start]) for start in starts] == [styles["plain"], styles["shout"], int(tokens[starts[2]])]
    assert int(tokens[starts[2]]) not in styles.values()
    with pytest.raises(DataError, match="no column 'kind'; its columns are text, style"):
        open_source(str(tmp_path / "rows.csv"), label_column="kind")


def test_a_label_that_cannot_name_a_style_is_refused(tmp_path):
    (tmp_path / "rows.csv").write_text("text,style\nhello,two words\n")
    with pytest.raises(DataError, match="'two words' cannot be a style label"):
        open_source(str(tmp_path / "rows.csv"), label_column="style").label_names()


def test_labels_of_validation_data_must_be_among_the_training_labels(corpora, tmp_path, capsys):
    code = main(["train", "completion", "--data", f"{corpora}/plain*/train", "--valid", f"{corpora}/*/valid",
                 "--labels-from", "folders", "--out", str(tmp_path / "run"), "--vocab-size", "400",
                 "--hidden-size", "8", "--embedding-size", "8", "--max-steps", "2", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and "--valid has the labels shout that the training data has not" in error


# ---- the labels in the web app and the API ----------------------------------------------------------------------
def test_read_labels_reads_config_json_without_torch_and_gives_none_for_what_it_cannot_read(labelled_run, tmp_path):
    import subprocess
    import sys

    code = ("import json, sys; from genseq.checkpoint_config import read_labels; "
            f"print(json.dumps([read_labels({str(labelled_run)!r}), 'torch' in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout) == [["plain", "shout"], False], result.stderr
    from genseq.checkpoint_config import read_labels

    (tmp_path / "config.json").write_text("{not json")
    assert read_labels(tmp_path) == read_labels(tmp_path / "missing") == read_labels(None) == []


@pytest.fixture(scope="module")
def labelled_app(labelled_run):
    """The web app built in-process with the labelled run as the completion tab's model."""
    import genseq_web

    return genseq_web.build_app({"completion": labelled_run}, models_dir=labelled_run.parent)


def test_the_tab_offers_the_models_labels_in_view_as_a_dropdown_with_none_first(labelled_app):
    import gradio as gr

    style = next(block for block in labelled_app.blocks.values() if getattr(block, "elem_id", None) == "completion-style")
    assert isinstance(style, gr.Dropdown) and style.visible is True and style.value == ""
    assert style.choices == [("(none)", ""), ("plain", "plain"), ("shout", "shout")]
    folded = style
    while folded is not None and not isinstance(folded, gr.Accordion):
        folded = folded.parent
    assert folded is None, "a model with labels shows them among the primary controls"


def test_picking_another_model_updates_the_style_dropdown(labelled_run, trained_run, tmp_path):
    import shutil

    from genseq_web import access, models
    from genseq_completion.task import CompletionTask

    for name, run in (("labelled", labelled_run), ("plain", trained_run)):
        shutil.copytree(run, tmp_path / name)
    style = next(option for option in CompletionTask.options if option.name == "style")
    show_choices = models.option_choices_reader(CompletionTask, access.ServerAccess(models_dir=tmp_path), None, style)
    labelled = show_choices(str(tmp_path / "labelled"), "")
    assert labelled.visible is True and [value for _, value in labelled.choices] == ["", "plain", "shout"]
    assert show_choices(str(tmp_path / "labelled"), "shout").value == "shout"  # a label the new model has stays
    unlabelled = show_choices(str(tmp_path / "plain"), "shout")
    assert unlabelled.visible is False and unlabelled.value == "" and unlabelled.choices == [("(none)", "")]


def test_the_tab_and_its_suggestions_run_in_the_chosen_style(labelled_run):
    """The page's parameters reach the engine: the tab's greedy text and suggestions are those of the library
    with the style's token first, and the two styles' suggestions differ."""
    import genseq_web
    from genseq_web.pool import TaskPool
    from gradio_client import Client
    from test_app import free_port

    from genseq_completion.suggest import next_words

    model, tokenizer = from_pretrained(labelled_run)
    app = genseq_web.build_app({"completion": labelled_run}, pool=TaskPool(), models_dir=labelled_run.parent)
    _, url, _ = genseq_web.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        _, _, completions = client.predict(prompt="Thy", style="shout", max_new_tokens=6, temperature=0,
                                           api_name="/completion")
        expected = generate(model, tokenizer, "Thy", GenerationConfig(max_new_tokens=6, temperature=0), style="shout")
        assert completions[0]["tokens"] == expected[0].tokens
        ranked = {style: client.predict(prompt="Thy", style=style, suggest=3, api_name="/completion_suggest")
                  for style in ("plain", "shout")}
        for style, shown in ranked.items():
            words = next_words(model, tokenizer, "Thy", 3, style)
            assert [entry["label"] for entry in shown["confidences"]] == [word["word"] for word in words]
            assert shown["confidences"][0]["confidence"] == pytest.approx(words[0]["prob"], abs=1e-4)
        assert ranked["plain"]["confidences"][0]["confidence"] != ranked["shout"]["confidences"][0]["confidence"]
    finally:
        app.close()


def test_a_label_token_after_a_word_ends_it_for_suggestions(labelled_tokenizer):
    """A label recurs before a word start in training (genseq.data), so a model that predicts it after a word
    has finished that word: the word's probability counts it."""
    import torch

    from genseq_completion.suggest import Vocabulary, suggest_words

    size, label = labelled_tokenizer.vocab_size, labelled_tokenizer.styles["shout"]
    the = next(i for i in range(size) if labelled_tokenizer.id_to_piece(i) == "▁the")

    def peaked(token):
        logits = torch.full((size,), -30.0)
        logits[token] = 0.0
        return logits

    def step(last, state):  # after any piece: the label, almost surely
        return torch.stack([peaked(label) for _ in last.tolist()]), state

    state = (torch.zeros(1, 1, 1),)
    words = suggest_words(step, state, peaked(the), Vocabulary.from_tokenizer(labelled_tokenizer), k=1)
    assert words[0]["word"] == "the" and words[0]["prob"] > 0.99


def test_an_action_sharing_an_option_the_task_does_not_declare_is_refused():
    from genseq.tasks import Action, Input, Output, Task

    class Misdeclared(Task):
        name = "misdeclared"
        inputs = (Input("text", "text"),)
        outputs = (Output("words", "ranked"),)
        actions = (Action("list", "List", outputs=("words",), shares=("style",)),)

    with pytest.raises(ConfigError, match="action list of task misdeclared names the option style, which the task "
                                          "does not declare"):
        Misdeclared.check_declaration()
    assert Misdeclared.option_choices("style") == ()  # no default model: no choices, and no error


# ---- style rows ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_stream(labelled_tokenizer, corpora):
    return tokenize(open_source(f"{corpora}/*/train", labels_from="folders"), labelled_tokenizer)


def test_a_style_row_is_eos_its_documents_label_then_text_from_a_word_start_of_that_document(
        labelled_tokenizer, labelled_stream):
    tokenizer, tokens = labelled_tokenizer, np.asarray(labelled_stream.tokens)
    windows = StyleWindows(labelled_stream, tokenizer, count=64, seed=0)
    inputs, targets = windows.batch(step=3, length=12)
    assert inputs.shape == targets.shape == (64, 12)
    labels = set(tokenizer.styles.values())
    text = tokenizer.decode(tokens.tolist())
    with_label = 0
    for row_inputs, row_targets in zip(inputs.tolist(), targets.tolist()):
        assert row_inputs[0] == tokenizer.eos_id
        labelled = row_inputs[1] in labels
        with_label += labelled
        body = row_inputs[1 + labelled :] + row_targets[-1:]
        assert row_targets[: 1 + labelled] == ([-100, body[0]] if labelled else [body[0]])  # the label goes unscored
        assert not labels & set(body) and tokenizer.id_to_piece(body[0]).startswith("▁")
        assert row_targets[labelled:] == body  # each text token is predicted from the one before it
        passage = tokenizer.decode(body)
        assert passage in text
        if labelled:  # the passage is in a document of that label: capitals for shout, as written for plain
            shout = row_inputs[1] == tokenizer.styles["shout"]
            letters = [c for c in passage if c.isalpha()]
            assert all(c.isupper() for c in letters) if shout else any(c.islower() for c in letters)
    assert 32 <= with_label < 64  # a quarter of the rows, in expectation, leave the label out


def test_style_rows_are_drawn_from_the_seed_and_step_and_a_share_is_those_rows(labelled_tokenizer, labelled_stream):
    def windows(seed, rows=None):
        return StyleWindows(labelled_stream, labelled_tokenizer, 8, seed, rows)

    first = windows(1).batch(5, 10)
    assert all(torch.equal(a, b) for a, b in zip(first, windows(1).batch(5, 10)))
    assert all(torch.equal(a[4:], b) for a, b in zip(first, windows(1, range(4, 8)).batch(5, 10)))
    assert not torch.equal(first[0], windows(1).batch(6, 10)[0])
    assert not torch.equal(first[0], windows(2).batch(5, 10)[0])


def test_past_a_documents_end_a_style_row_reads_end_of_text_and_scores_nothing(labelled_tokenizer, labelled_stream):
    inputs, targets = StyleWindows(labelled_stream, labelled_tokenizer, count=16, seed=0).batch(0, 6000)
    assert (targets == -100).any(dim=1).all()  # no document of the fixture is 6,000 tokens long
    padded = targets[:, 2:] == -100
    assert (inputs[:, 3:][padded[:, :-1]] == labelled_tokenizer.eos_id).all()


def train(corpora, out, *flags):
    return main(["train", "completion", "--data", f"{corpora}/*/train", "--valid", f"{corpora}/*/valid",
                 "--labels-from", "folders", "--out", str(out), "--vocab-size", "400", "--embedding-size", "16",
                 "--hidden-size", "32", "--batch-size", "4", "--bptt", "16", "--no-progress", "--fixed-defaults",
                 *flags])


def test_style_rows_teach_the_label_to_steer_a_continuation(tmp_path):
    """Two styles that never share a word (fruit, metals): after [EOS] and a label, a model trained with style rows
    expects a word of that label's style, where one trained as long without them (which reads a label only at
    a document's start and every 256 tokens) has learnt it far less."""
    words = {"fruit": "apple banana cherry grape lemon mango peach plum".split(),
             "metal": "iron copper silver gold zinc tin lead nickel".split()}
    generator = np.random.default_rng(0)
    for label, vocabulary in words.items():
        for split, count in (("train", 2), ("valid", 1)):
            (tmp_path / "text" / label / split).mkdir(parents=True)
            for index in range(count):
                lines = (" ".join(generator.choice(vocabulary, 8)) for _ in range(80))
                (tmp_path / "text" / label / split / f"{index}.txt").write_text("\n".join(lines) + "\n")
    gaps = {}
    for rows in ("0", "8"):
        out = tmp_path / f"rows{rows}"
        assert main(["train", "completion", "--data", f"{tmp_path}/text/*/train", "--valid", f"{tmp_path}/text/*/valid",
                     "--labels-from", "folders", "--out", str(out), "--vocab-size", "300", "--embedding-size", "16",
                     "--hidden-size", "32", "--layers", "1", "--batch-size", "4", "--bptt", "12", "--lr", "1e-2",
                     "--max-steps", "150", "--style-rows", rows, "--no-progress", "--fixed-defaults",
                     "--precision", "fp32"]) == 0  # auto may pick bf16 on some machines
        model, tokenizer = from_pretrained(out / "last")
        model.eval()
        for label, vocabulary in words.items():
            other = next(name for name in words if name != label)
            firsts = [tokenizer.encode(word)[0] for word in vocabulary]  # each word's first piece

            def mass(style):  # the probability the model gives to a first piece of the label's words
                with torch.no_grad():
                    logits, _ = model(torch.tensor([[tokenizer.eos_id, tokenizer.styles[style]]]))
                return logits[0, -1].softmax(-1)[sorted(set(firsts))].sum().item()

            gaps[rows, label] = mass(label) - mass(other)
    # Measured: a gap of about 0.49 with style rows, 0.17 without.
    assert all(gaps["8", label] > 0.35 for label in words), gaps
    assert all(gaps["8", label] > gaps["0", label] + 0.2 for label in words), gaps


def test_an_interrupted_and_resumed_run_with_style_rows_ends_with_the_weights_of_an_uninterrupted_one(
        corpora, tmp_path, monkeypatch, capsys):
    flags = ["--max-steps", "12", "--eval-every", "5", "--style-rows", "2"]
    assert train(corpora, tmp_path / "straight", *flags) == 0
    original_step = RunLoop.train_step

    def step_then_stop(self, batch):
        loss = original_step(self, batch)
        if self.progress.step == 7:
            self.request_stop()
        return loss

    monkeypatch.setattr(RunLoop, "train_step", step_then_stop)
    assert train(corpora, tmp_path / "resumed", *flags) == 130
    monkeypatch.setattr(RunLoop, "train_step", original_step)
    assert main(["train", "completion", "--data", f"{corpora}/*/train", "--valid", f"{corpora}/*/valid",
                 "--labels-from", "folders", "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    for name in ("model.safetensors", "last/model.safetensors"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


def test_a_labelled_run_without_style_rows_given_gets_half_its_batch_and_says_so(labelled_run, corpora, tmp_path,
                                                                                  capsys):
    config = json.loads((labelled_run / "config.json").read_text())["training_config"]
    assert config["style_rows"] == 2  # the fixture's batch of 4
    assert train(corpora, tmp_path / "off", "--max-steps", "1", "--style-rows", "0") == 0
    assert "--style-rows" not in capsys.readouterr().err
    assert json.loads((tmp_path / "off" / "config.json").read_text())["training_config"]["style_rows"] == 0
    assert train(corpora, tmp_path / "on", "--max-steps", "1", "--batch-size", "6") == 0
    assert "style labels: --style-rows 3 (half the batch)" in capsys.readouterr().err


def test_style_rows_without_labels_are_refused_in_one_sentence(train_file, valid_file, tmp_path, capsys):
    code = main(["train", "completion", "--data", str(train_file), "--valid", str(valid_file), "--out",
                 str(tmp_path / "run"), "--max-steps", "2", "--style-rows", "2", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert "--style-rows reads documents' style labels: give --labels-from or --label-column" in error
    assert not (tmp_path / "run").exists()
