"""`genseq generate`: JSON output, streaming, stdin prompts, and one clear sentence for each bad input."""

import io
import json
import sys

import pytest

from genseq.cli import main
from cli_helpers import run_cli


def test_json_prints_one_document_with_every_completion(capsys, untrained_checkpoint):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "Shall I", "--model", untrained_checkpoint, "--max-new-tokens", "8",
                           "--seed", "3", "--num-return-sequences", "2", "--json")
    assert code == 0
    document = json.loads(out)
    assert set(document) == {"prompt", "model", "seed", "completions", "seconds"}
    assert (document["prompt"], document["model"], document["seed"]) == ("Shall I", untrained_checkpoint, 3)
    assert len(document["completions"]) == 2
    for completion in document["completions"]:
        assert set(completion) == {"text", "tokens", "logprob", "finish_reason"}
        assert completion["finish_reason"] in ("eos", "length") and len(completion["tokens"]) <= 8


def test_the_stream_shows_the_prompt_and_the_same_text_as_json(capsys, untrained_checkpoint):
    common = ["generate", "--prompt", "Shall I", "--model", untrained_checkpoint, "--max-new-tokens", "30", "--seed", "5"]
    _, streamed, _ = run_cli(capsys, *common)
    _, out, _ = run_cli(capsys, *common, "--json")
    assert streamed == "Shall I" + json.loads(out)["completions"][0]["text"] + "\n"


def test_beam_search_prints_the_best_continuation_after_the_prompt(capsys, untrained_checkpoint):
    common = ["generate", "--prompt", "When", "--model", untrained_checkpoint, "--max-new-tokens", "5", "--num-beams", "3"]
    _, printed, _ = run_cli(capsys, *common)
    _, out, _ = run_cli(capsys, *common, "--json")
    assert printed == "When" + json.loads(out)["completions"][0]["text"] + "\n"


def test_suggestions_from_the_command_line(capsys, untrained_checkpoint):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "To be or not to", "--model", untrained_checkpoint, "--suggest", "4", "--json")
    suggestions = json.loads(out)
    assert code == 0 and len(suggestions) == 4 and set(suggestions[0]) == {"word", "prob"}
    for stream in ("--stream", "--no-stream"):
        _, printed, _ = run_cli(capsys, "generate", "--prompt", "To be or not to", "--model", untrained_checkpoint, "--suggest", "4", stream)
        assert printed.startswith("To be or not to\nsuggestions:") and printed.count("\n") == 6


def test_beam_search_from_the_command_line(capsys, untrained_checkpoint):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "When", "--model", untrained_checkpoint, "--max-new-tokens", "5",
                           "--num-beams", "3", "--num-return-sequences", "3", "--json")
    completions = json.loads(out)["completions"]
    assert code == 0 and len(completions) == 3
    assert completions[0]["logprob"] >= min(c["logprob"] for c in completions)


def test_prompt_dash_reads_stdin(capsys, monkeypatch, untrained_checkpoint):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("naïve café\n".encode())))
    code, out, _ = run_cli(capsys, "generate", "--prompt", "-", "--model", untrained_checkpoint, "--max-new-tokens", "3", "--json")
    assert code == 0 and json.loads(out)["prompt"] == "naïve café"


def test_stop_strings_understand_newline_escapes(capsys, untrained_checkpoint):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "x", "--model", untrained_checkpoint, "--max-new-tokens", "40",
                           "--stop", r"\n", "e", "--json", "--seed", "1")
    text = json.loads(out)["completions"][0]["text"]
    assert code == 0 and "\n" not in text and "e" not in text


def test_an_absurd_max_new_tokens_is_capped_with_a_note(capsys, untrained_checkpoint):
    code, out, err = run_cli(capsys, "generate", "--prompt", "x", "--model", untrained_checkpoint, "--max-new-tokens", "10000000",
                             "--max-time", "0.05", "--json")
    assert code == 0 and "capped at 10000" in err and json.loads(out)["completions"]


BAD_INPUTS = {
    "negative temperature": (["--temperature", "-1"], "temperature must be in [0, inf)"),
    "top_p zero": (["--top-p", "0"], "top_p must be in (0, 1]"),
    "top_p above one": (["--top-p", "1.5"], "top_p must be in (0, 1]"),
    "negative top_k": (["--top-k", "-3"], "option top_k must be in [0, inf)"),
    "no beams": (["--num-beams", "0"], "option num_beams must be in [1, 64]"),
    "zero new tokens": (["--max-new-tokens", "0"], "option max_new_tokens must be in [1, inf)"),
    "beams with sampling": (["--num-beams", "3", "--top-p", "0.5"], "cannot be combined with beam search"),
    "beams with a given temperature": (["--num-beams", "3", "--temperature", "0.8"],
                                       "the sampling-only options temperature cannot be combined with beam search "
                                       "(num_beams=3), which is deterministic; drop them or set num_beams to 1"),
    "empty stop string": (["--stop", ""], "stop strings must not be empty"),
    "stream with json": (["--stream", "--json"], "--stream prints text as it grows and --json prints one document"),
    "missing model": (["--model", "/nonexistent/model"], "is not a checkpoint directory"),
    "not a number": (["--temperature", "warm"], "--temperature must be a number, not 'warm'"),
    "unknown task": (["--task", "poetry"], "unknown task 'poetry'; available tasks: "),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_one_sentence_and_exit_2(capsys, untrained_checkpoint, name):
    extra, message = BAD_INPUTS[name]
    code = exit_code(["generate", "--prompt", "Shall I", "--model", untrained_checkpoint, *extra])
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def exit_code(argv) -> int:
    """main's return value, or the code of the SystemExit argparse raises for a malformed flag."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_stdin_that_is_not_utf8_is_a_clear_error(capsys, monkeypatch, untrained_checkpoint):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfeabc")))
    code, _, err = run_cli(capsys, "generate", "--prompt", "-", "--model", untrained_checkpoint)
    assert code == 2 and "not UTF-8" in err


def test_banned_ids_are_never_generated(capsys, untrained_checkpoint):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "x", "--model", untrained_checkpoint, "--max-new-tokens", "30",
                           "--temperature", "0", "--banned-ids", "5", "6", "7", "--json")
    tokens = json.loads(out)["completions"][0]["tokens"]
    assert code == 0 and not {5, 6, 7} & set(tokens)
    code, _, err = run_cli(capsys, "generate", "--prompt", "x", "--model", untrained_checkpoint, "--banned-ids", "five")
    assert code == 2 and "option banned_ids must hold token ids" in err
