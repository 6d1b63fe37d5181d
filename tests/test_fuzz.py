"""Property-based fuzzing of the `genseq` command: whatever the arguments or the files, it ends cleanly.

Hypothesis builds argument lists for every command from a valid, tiny, bounded
base by replacing flag values with numbers at and beyond every bound, NaN and
infinities, empty, huge and control-character strings, and paths to files of
generated content (random bytes, mutated checkpoints, broken images). Each
example must end with exit code 0, 1 or 2, no traceback on stderr, an error
that is one line, and bounded memory.

Each example calls genseq.cli.main in a forked child of this process: the
imports and tiny models are already loaded, so an example costs milliseconds to
a second, and the child runs under an address-space limit and a wall-clock
limit. A runaway allocation then fails inside the child instead of swapping the
machine, and the child's VmHWM - VmRSS (the peak is reset at fork) is the
example's own memory growth, not the whole session's high-water mark.

The budget comes from the Hypothesis profile (tests/conftest.py): "ci" by
default, `pytest -m fuzz --hypothesis-profile long` for thousands of examples.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal
import struct
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genseq.cli import main

pytestmark = [pytest.mark.fuzz,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness forks and reads /proc")]

MiB = 2**20
MEMORY_GROWTH_LIMIT = 512 * MiB  # a tiny model's command needs tens of MiB; more means a size came from the input
ADDRESS_SPACE_HEADROOM = 2048 * MiB  # beyond this a child's allocation fails instead of swapping the machine
TIME_LIMIT_S = 60  # every example is bounded in work to a few seconds; one still running after this has hung
ERROR_LINE = re.compile(r"^genseq[\w ]*: error: \S")


def budget(weight: float) -> int:
    """This test's examples: the profile's max_examples times its weight (heavier commands get fewer)."""
    return max(1, round(settings.default.max_examples * weight))


def fuzz_settings(weight: float):
    # The function-scoped fixtures (folder, launch_stub) hold nothing an example could leave behind for the next.
    return settings(max_examples=budget(weight), suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------- running one example


@dataclass
class Outcome:
    code: int | None  # None: the child died or hung (see note)
    out: str
    err: str
    growth: int  # bytes of peak resident memory beyond the child's start
    note: str = ""


def run_cli(argv: list[str], stdin: bytes | None = b"") -> Outcome:
    """genseq.cli.main(argv) in a forked child; stdin None is a closed standard input (`<&-`)."""
    with tempfile.TemporaryDirectory(prefix="genseq-fuzz-io-") as folder:
        paths = [os.path.join(folder, name) for name in ("stdin", "stdout", "stderr")]
        if stdin is not None:
            Path(paths[0]).write_bytes(stdin)
        report_read, report_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                os.close(report_read)
                _child(argv, stdin is not None, paths, report_write)
            finally:
                os._exit(0)
        os.close(report_write)
        report, note = _read_report(report_read, pid)
        out, err = (Path(path).read_bytes().decode("utf-8", "replace") for path in paths[1:])
    if report is None:
        return Outcome(None, out, err, 0, note)
    return Outcome(report["code"], out, err, report["growth"])


def _child(argv: list[str], has_stdin: bool, paths: list[str], report_fd: int) -> None:
    """Run main with stdout and stderr on files (C libraries' output included) and memory limited."""
    for fd, path, flags in ((1, paths[1], os.O_WRONLY | os.O_CREAT), (2, paths[2], os.O_WRONLY | os.O_CREAT)):
        os.dup2(os.open(path, flags, 0o600), fd)
    # As a UTF-8 terminal does: stdout strict, stderr backslashreplace.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    if has_stdin:
        os.dup2(os.open(paths[0], os.O_RDONLY), 0)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    else:
        os.close(0)
        sys.stdin = None  # what Python gives a program started with stdin closed
    start = _status_kib("VmRSS") * 1024
    limit = _status_kib("VmSize") * 1024 + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's usage errors and --help, as the console script would exit
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # what the interpreter prints for an exception that escapes main
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            traceback.print_exc(file=sys.__stderr__)
    growth = _status_kib("VmHWM") * 1024 - start
    os.write(report_fd, json.dumps({"code": code, "growth": growth}).encode())


def _read_report(report_fd: int, pid: int) -> tuple[dict | None, str]:
    chunks, note = [], ""
    with os.fdopen(report_fd, "rb") as report:
        if select.select([report], [], [], TIME_LIMIT_S)[0]:
            chunks.append(report.read())
        else:
            os.kill(pid, signal.SIGKILL)
            note = f"still running after {TIME_LIMIT_S} s (a hang)"
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and not note:
        note = f"died of signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})"
    text = b"".join(chunks)
    return (json.loads(text) if text else None), note


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def assert_clean_exit(outcome: Outcome, argv: list[str]) -> None:
    """Exit 0, 1 or 2; no traceback; a failure says so in one line per error; memory bounded."""
    where = f"genseq {shlex.join(argv)[:600]}\n--- stderr:\n{outcome.err[-3000:]}"
    assert outcome.code is not None, f"{outcome.note}: {where}"
    assert outcome.code in (0, 1, 2), f"exit code {outcome.code}: {where}"
    assert "Traceback" not in outcome.err, f"a traceback: {where}"
    # What a terminal shows: a progress bar's carriage returns leave the last segment of a line.
    lines = [line.rsplit("\r", 1)[-1] for line in outcome.err.split("\n")]
    lines = [line for line in lines if line.strip()]
    if outcome.code != 0:
        errors = [line for line in lines if ERROR_LINE.match(line)]
        stray = [line for line in lines if not line.startswith("genseq")]
        assert errors, f"exit {outcome.code} without an error line: {where}"
        assert not stray, f"stderr has lines that are not genseq's messages: {stray[:3]}: {where}"
        if outcome.code == 2:
            assert len(errors) == 1 and lines[-1] == errors[0], f"the error is not one last line: {where}"
    assert outcome.growth < MEMORY_GROWTH_LIMIT, f"peak memory grew {outcome.growth / MiB:.0f} MiB: {where}"


def check(argv: list[str], stdin: bytes | None = b"") -> Outcome:
    outcome = run_cli(argv, stdin)
    assert_clean_exit(outcome, argv)
    return outcome


# ---------------------------------------------------------------- values


INTEGERS = ["0", "-1", "1", "2", "3", "64", "65", str(2**31), str(2**63), str(2**64 + 1), str(-(2**64 + 1)),
            str(10**9), str(10**12), "99999", "65536"]
FLOATS = ["0.0", "-0.0", "0.5", "1.0", "1.0000001", "-1e30", "1e9", "1e11", "1e30", "1e309", "1e-320",
          "nan", "-nan", "NaN", "inf", "-inf", "Infinity"]
ODD_NUMBERS = ["", " ", "1_000", " 3 ", "0x10", "\u0663", "1e", "--", "-", "+5", "5.", ".5"]  # \u0663: Arabic-indic 3
SPECIAL_TEXT = ["", " ", "\t", "\n", "\r\n", "-", "--", "\x1b[31mred", "\x7f", "\u202e", "\ufeff", "\udcff",
                "\U0001f4a5", "\ufb01", "../", "/", ".", "~", "%s", "{0}", "\\n", "a\nb", "\u2028", "\x85"]


@st.composite
def long_text(draw) -> str:
    """A short unit repeated to about 1000, 70,000 or just over 2**20 characters (1 to 4 MiB in UTF-8).

    Huge strings without Hypothesis generating each byte; a million characters
    is past the 1 MiB a reader's chunk holds and still seconds of work for a
    tiny model.
    """
    unit = draw(st.sampled_from(["a", "ab ", "\u6f22\u5b57", "\U0001f600", " ", "\n", "la la. "]))
    return unit * (draw(st.sampled_from([1000, 70_000, 2**20 + 3])) // len(unit) + 1)


def plain_text(max_size: int = 40):
    # No NUL (a shell cannot pass one) and no surrogates but the ones os.fsdecode makes of undecodable bytes.
    characters = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
    return st.text(characters, max_size=max_size)


def any_text():
    return st.one_of(st.sampled_from(SPECIAL_TEXT), plain_text(), long_text())


def number():
    return st.one_of(st.sampled_from(INTEGERS), st.sampled_from(FLOATS), st.sampled_from(ODD_NUMBERS),
                     st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(repr))


def small_number():
    """For a flag that sets an amount of work (steps): huge values would be honest hours of training."""
    return st.one_of(st.sampled_from(INTEGERS[:7] + FLOATS[:6] + FLOATS[11:] + ODD_NUMBERS),
                     st.integers(-5, 8).map(str))


@dataclass(frozen=True)
class File:
    """A path made in the example's folder: content bytes, or a special kind."""

    content: bytes = b""
    kind: str = "file"  # file, missing, folder, devnull, devzero, fifo, inside-a-file
    name: str = "input"

    def make(self, folder: Path) -> str:
        path = folder / self.name
        if self.kind == "file":
            path.write_bytes(self.content)
        elif self.kind == "folder":
            path.mkdir()
        elif self.kind in ("devnull", "devzero"):
            path.symlink_to("/dev/null" if self.kind == "devnull" else "/dev/zero")
        elif self.kind == "fifo":
            os.mkfifo(path)
        elif self.kind == "inside-a-file":
            path.write_bytes(b"x")
            path = path / "below"
        return str(path)


def materialize(argv: list, folder: Path) -> list[str]:
    """argv with each File made under folder (numbered names, so two never clash)."""
    words = []
    for index, word in enumerate(argv):
        if isinstance(word, File):
            word = File(word.content, word.kind, f"{index}-{word.name}").make(folder)
        words.append(word)
    return words


def random_bytes(max_size: int = 3000):
    return st.binary(max_size=max_size)


def corpus_content():
    return st.one_of(
        random_bytes(),
        plain_text(400).map(str.encode),
        long_text().map(str.encode),
        st.sampled_from([b"", b"\n\n\n", b"   \t ", b"\xef\xbb\xbfhello world\n", b"ok\r\nok\r\n",
                         b"valid text then \xff\xfe bad bytes\n", "\u6f22" .encode() * (2**20 // 3 + 5)]),
    )


def output_path():
    return st.one_of(
        st.sampled_from([File(kind="missing", name="out.png"), File(kind="folder"), File(b"old", name="old.png"),
                         File(kind="inside-a-file"), File(kind="devnull"), "/", "", "/proc/version"]),
        plain_text(20).filter(lambda name: name.strip("./") and "/" not in name).map(lambda name: File(kind="missing",
                                                                                                      name=name)),
    )


def input_path(content=None):
    content = content if content is not None else random_bytes()
    return st.one_of(
        content.map(File),
        st.sampled_from([File(kind="missing"), File(kind="folder"), File(kind="devnull"), File(b""),
                         File(kind="inside-a-file"), "", "-", "/"]),
    )


# ---------------------------------------------------------------- images and checkpoints


def png_bytes(size=(8, 8), mode="RGB", format="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "P", "I", "F", "I;16") else (10, 200, 30, 255)[:len(mode)]).save(
        buffer, format=format, **options)
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid 8x8 PNG whose header claims width x height pixels."""
    data = bytearray(png_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height (the CRC then fails: readers differ)
    return bytes(data)


@st.composite
def image_content(draw) -> bytes:
    valid = [png_bytes(), png_bytes((1, 1)), png_bytes((1, 4000), "L"), png_bytes((8, 8), "RGBA"),
             png_bytes((8, 8), "P"), png_bytes((8, 8), "I;16"), png_bytes((8, 8), "CMYK", "JPEG"),
             png_bytes((8, 8), "F", "TIFF"), png_bytes((8, 8), "RGB", "GIF", save_all=True,
                                                       append_images=[Image.new("RGB", (8, 8))]),
             png_bytes((8, 8), "RGB", "BMP"), png_bytes((8, 8), "RGB", "WEBP")]
    broken = [bomb_png(100_000, 100_000), bomb_png(0, 0), bomb_png(2**31 - 1, 1), b"GIF89a", b"\x89PNG\r\n\x1a\n",
              b"not an image at all", b"<svg xmlns='http://www.w3.org/2000/svg'/>"]
    choice = draw(st.sampled_from(["valid", "broken", "truncated", "flipped", "random"]))
    if choice == "valid":
        return draw(st.sampled_from(valid))
    if choice == "broken":
        return draw(st.sampled_from(broken))
    data = draw(st.sampled_from(valid))
    if choice == "truncated":
        return data[:draw(st.integers(0, len(data) - 1))]
    if choice == "flipped":
        position = draw(st.integers(0, len(data) - 1))
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]
    return draw(random_bytes(600))


JSON_VALUES = [-1, 0, 1, 2, 2**31, 2**64 + 1, 10**9, 20_000, 1e30, 1.5, float("nan"), float("inf"), float("-inf"),
               "8", "", None, True, False, [], {}, [1, 2], "x" * 5000, -(2**63)]


@st.composite
def mutated_json(draw, original: dict) -> bytes:
    """original with one value, anywhere in it, replaced or removed; or a document that is not one at all."""
    choice = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "text", "truncate"]))
    text = json.dumps(original)
    if choice == "text":
        return draw(st.sampled_from([b"", b"[]", b"null", b"1", b'"s"', b"NaN", b"{", b"\xff\xfe", b"{}"]))
    if choice == "truncate":
        return text.encode()[:draw(st.integers(0, len(text) - 1))]
    document = json.loads(text)
    paths = list(_json_paths(document))
    parent, key = draw(st.sampled_from(paths))
    if choice == "replace":
        parent[key] = draw(st.sampled_from(JSON_VALUES))
    elif choice == "delete":
        del parent[key]
    elif isinstance(parent, list):
        parent.append(draw(st.sampled_from(JSON_VALUES)))
    else:
        parent[draw(plain_text(10))] = draw(st.sampled_from(JSON_VALUES))
    return json.dumps(document).encode()  # NaN and Infinity are written as Python's json writes them


def _json_paths(document):
    """(container, key) for every value in a JSON document; for dicts and lists alike."""
    items = document.items() if isinstance(document, dict) else enumerate(document)
    for key, value in items:
        yield document, key
        if isinstance(value, (dict, list)) and value:
            yield from _json_paths(value)


@st.composite
def mutated_safetensors(draw, original: bytes) -> bytes:
    """A safetensors file with its header, its length field or its data damaged."""
    length = struct.unpack("<Q", original[:8])[0]
    header = json.loads(original[8:8 + length])
    choice = draw(st.sampled_from(["header", "header", "length", "nan", "truncate", "random", "empty"]))
    if choice == "length":
        return struct.pack("<Q", draw(st.sampled_from([0, 1, 2**63, 2**64 - 1, length + 1, 10**8]))) + original[8:]
    if choice == "nan":  # every float weight NaN (or inf): a file that parses and poisons
        value = draw(st.sampled_from([float("nan"), float("inf")]))
        body = struct.pack("<f", value) * ((len(original) - 8 - length) // 4)
        return original[:8 + length] + body
    if choice == "truncate":
        return original[:draw(st.integers(0, len(original) - 1))]
    if choice == "random":
        return draw(random_bytes(2000))
    if choice == "empty":
        return b""
    names = sorted(name for name in header if name != "__metadata__")
    entry = header[draw(st.sampled_from(names))]
    key = draw(st.sampled_from(["shape", "dtype", "data_offsets", "delete"]))
    if key == "shape":
        entry["shape"] = draw(st.sampled_from([[], [0], [-1], [2**40, 2**40], [10**9], ["a"], entry["shape"][::-1]]))
    elif key == "dtype":
        entry["dtype"] = draw(st.sampled_from(["F16", "BF16", "I64", "F64", "U8", "BOOL", "XX", 5]))
    elif key == "data_offsets":
        entry["data_offsets"] = draw(st.sampled_from([[0, 2**62], [-8, 0], [8, 0], [0, 0], [0]]))
    else:
        del header[names[0]]
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + original[8 + length:]


CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.model")


@st.composite
def damaged_checkpoint(draw, source: Path, files=CHECKPOINT_FILES):
    """(file name, content or special kind) for one file of the checkpoint in source."""
    name = draw(st.sampled_from(files))
    original = (source / name).read_bytes()
    kinds = ["mutate", "mutate", "mutate", "random", "missing", "folder", "devzero", "fifo"]
    kind = draw(st.sampled_from(kinds))
    if kind == "random":
        return name, draw(random_bytes()), "file"
    if kind != "mutate":
        return name, b"", kind
    if name.endswith(".json"):
        return name, draw(mutated_json(json.loads(original))), "file"
    if name.endswith(".safetensors"):
        return name, draw(mutated_safetensors(original)), "file"
    cut = draw(st.sampled_from([0, 1, 16, len(original) // 2, len(original) - 1]))
    return name, original[:cut], "file"


def copy_with_damage(source: Path, target: Path, damage) -> Path:
    name, content, kind = damage
    shutil.copytree(source, target, symlinks=True)
    path = target / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if kind != "missing":
        File(content, kind, name).make(target)
    return target


# ---------------------------------------------------------------- fixtures: tiny models, data, warm imports


@dataclass
class Setup:
    lm: Path
    sentiment: Path
    captioner: Path
    corpus: Path
    sentiment_csv: Path
    captions: Path
    tokenizer_file: Path


@pytest.fixture(scope="module")
def setup(trained_run, tokenizer, valid_file, tmp_path_factory) -> Setup:
    """Every model the examples need, made once, and each command run once here so children start warm."""
    from genseq_captioning.captioner import Captioner
    from genseq_captioning.encoder import EncoderConfig

    root = tmp_path_factory.mktemp("fuzz")
    tokenizer_file = root / "tokenizer.model"
    tokenizer_file.write_bytes(tokenizer.to_bytes())
    torch.manual_seed(0)
    captioner = Captioner.create(EncoderConfig(image_size=32), tokenizer, feature_size=8, embedding_size=8,
                                 hidden_size=8, attention_size=8)
    captioner.save(root / "captioner")
    captions = root / "captions"
    captions.mkdir()
    with open(captions / "metadata.jsonl", "w") as metadata:
        for index, color in enumerate(["red", "blue", "green", "white"]):
            Image.new("RGB", (16, 16), color).save(captions / f"{index}.png")
            metadata.write(json.dumps({"file_name": f"{index}.png", "text": f"a {color} square"}) + "\n")
    sentiment_csv = root / "reviews.csv"
    rows = ["text,label"] + [f"{word} flight crew,{label}" for word, label in
                             [("good", 1), ("bad", 0), ("great", 1), ("awful", 0), ("lovely", 1), ("rude", 0)] * 5]
    sentiment_csv.write_text("\n".join(rows) + "\n")
    assert main(["train", "sentiment", "--data", str(sentiment_csv), "--valid", str(sentiment_csv), "--out",
                 str(root / "sentiment"), "--tokenizer", str(tokenizer_file), "--embedding-size", "8", "--hidden-size",
                 "8", "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    found = Setup(trained_run, root / "sentiment", root / "captioner", valid_file, sentiment_csv, captions,
                  tokenizer_file)
    _warm_in_parent(found)
    return found


def _warm_in_parent(found: Setup) -> None:
    """Import in this process what every command imports, so each forked child has it already."""
    import contextlib

    import tqdm

    tqdm.tqdm.monitor_interval = 0  # no monitor thread here: a lock it held at a fork would hang the child
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["generate", "--model", str(found.lm), "--prompt", "a", "--max-new-tokens", "2"])
        main(["generate", "--task", "captioning", "--model", str(found.captioner), "--image",
              str(found.captions / "0.png"), "--max-new-tokens", "2"])
        main(["generate", "--task", "sentiment", "--model", str(found.sentiment), "--text", "good"])
        main(["eval", "completion", "--model", str(found.lm), "--data", str(found.corpus)])
        main(["inspect", "--model", str(found.lm), "--prompt", "a"])


@pytest.fixture
def folder():
    """Makes a fresh folder per example (pytest's tmp_path is one per test, not per Hypothesis example)."""
    made = []

    def new() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="genseq-fuzz-")))
        return made[-1]
    yield new
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- commands


@dataclass
class Command:
    """A command's valid tiny base, the flags an example may change and the values each takes.

    guards bound an example's work (steps, tokens, time); each is appended last,
    so it wins, unless the example changes that very flag; then the other guards
    still bound it.
    """

    words: list[str]
    base: list
    flags: dict
    guards: dict = field(default_factory=dict)
    switches: tuple = ()  # flags without a value


def command_argv(command: Command):
    """Arguments: the base with one to three flags changed, a switch or a stray word added."""
    flag = st.sampled_from(sorted(command.flags)).flatmap(lambda name: command.flags[name].map(lambda v: (name, v)))
    change = st.one_of(flag, flag, flag, st.sampled_from(command.switches or ("--json",)).map(lambda s: (s, None)),
                       any_text().map(lambda word: (word, None)))
    drop_base = st.booleans() if command.base else st.just(False)

    @st.composite
    def build(draw):
        changes = draw(st.lists(change, min_size=1, max_size=3, unique_by=lambda pair: pair[0]))
        changed = {name for name, _ in changes}
        if len(changed & set(command.guards)) == len(command.guards) > 0:
            changes = [pair for pair in changes if pair[0] != sorted(command.guards)[0]]
            changed = {name for name, _ in changes}
        base = list(command.base)
        if draw(drop_base):  # a required flag or its value missing
            del base[draw(st.integers(0, len(base) - 1))]
        argv = list(command.words) + base
        for name, value in changes:
            argv += [name] if value is None else ([name] + value if isinstance(value, list) else [name, value])
        for name, value in command.guards.items():
            if name not in changed:
                argv += [name, value]
        return argv

    return build()


def values_list(values):
    """A flag taking several values (nargs='+')."""
    return st.lists(values, min_size=0, max_size=3)


SAMPLING = {
    "--max-new-tokens": number(), "--temperature": number(), "--top-k": number(), "--top-p": number(),
    "--min-p": number(), "--typical-p": number(), "--repetition-penalty": number(), "--no-repeat-ngram": number(),
    "--min-new-tokens": number(), "--num-beams": st.one_of(number(), st.sampled_from(["2", "4", "64", "65"])),
    "--length-penalty": number(), "--num-return-sequences": st.one_of(number(), st.sampled_from(["2", "64"])),
    "--max-time": number(), "--seed": number(), "--precision": st.one_of(st.sampled_from(["fp32", "bf16", "int8",
                                                                                           "auto", "fp16"]), any_text()),
    "--device": st.one_of(st.sampled_from(["cpu", "cuda", "auto", "tpu", "mps", "cuda:0", "cuda:99", "cuda:-1", "cpu:0"]), any_text()),
    "--task": st.one_of(st.sampled_from(["completion", "captioning", "sentiment", "nope"]), any_text()),
}


def generate_command(setup: Setup) -> Command:
    flags = {**SAMPLING, "--prompt": any_text(), "--stop": values_list(any_text()),
             "--banned-ids": values_list(number()), "--suggest": number(), "--model": input_path(),
             "--text": any_text(), "--image": input_path(image_content()), "--threshold": number()}
    return Command(["generate"], ["--model", str(setup.lm), "--prompt", "Shall I"], flags,
                   guards={"--max-new-tokens": "6", "--max-time": "2"},
                   switches=("--json", "--stream", "--no-stream", "--attention"))


def captioning_command(setup: Setup) -> Command:
    flags = {**SAMPLING, "--image": input_path(image_content()), "--attention-map": output_path(),
             "--prompt": any_text(), "--model": input_path()}
    return Command(["generate", "--task", "captioning"], ["--model", str(setup.captioner), "--image",
                                                          str(setup.captions / "0.png")], flags,
                   guards={"--max-new-tokens": "4", "--max-time": "2"},
                   switches=("--json", "--stream", "--attention", "--no-attention"))


def sentiment_command(setup: Setup) -> Command:
    flags = {"--text": any_text(), "--threshold": number(), "--model": input_path(), "--device": SAMPLING["--device"],
             "--prompt": any_text(), "--max-new-tokens": number()}
    return Command(["generate", "--task", "sentiment"], ["--model", str(setup.sentiment), "--text", "good flight"],
                   flags, switches=("--json", "--stream", "--no-stream"))


def train_completion_command(setup: Setup) -> Command:
    sizes = st.one_of(number(), st.sampled_from(["1", "2", "8"]))
    flags = {
        "--data": input_path(corpus_content()), "--valid": input_path(corpus_content()), "--out": output_path(),
        "--resume": input_path(), "--text-column": any_text(), "--cell": any_text(),
        "--embedding-size": sizes, "--hidden-size": sizes, "--layers": st.one_of(small_number(), st.just(str(10**9))),
        "--projection-size": sizes, "--dropout": number(), "--embedding-dropout": number(),
        "--layer-dropout": number(), "--output-dropout": number(), "--vocab-size": number(),
        "--tokenizer-type": any_text(), "--tokenizer": input_path(), "--batch-size": sizes, "--bptt": sizes,
        "--lr": number(), "--weight-decay": number(), "--schedule": any_text(), "--warmup-steps": number(),
        "--epochs": number(), "--max-steps": number(), "--max-time": number(), "--clip-grad-norm": number(),
        "--patience": number(), "--eval-every": number(), "--checkpoint-every": number(),
        "--checkpoint-minutes": number(), "--seed": number(), "--device": SAMPLING["--device"],
        "--precision": st.one_of(st.sampled_from(["auto", "bf16", "fp32"]), any_text()),
    }
    base = ["--data", str(setup.corpus), "--out", File(kind="missing", name="run"), "--tokenizer",
            str(setup.tokenizer_file), "--embedding-size", "8", "--hidden-size", "8", "--batch-size", "4",
            "--bptt", "8", "--warmup-steps", "0", "--no-progress"]
    return Command(["train", "completion"], base, flags, guards={"--max-steps": "2", "--epochs": "1"},
                   switches=("--streaming", "--tie-weights", "--no-tie-weights", "--no-progress"))


def train_captioning_command(setup: Setup) -> Command:
    sizes = st.one_of(number(), st.sampled_from(["1", "8"]))
    flags = {
        "--data": input_path(), "--valid": input_path(), "--split": any_text(), "--image-column": any_text(),
        "--caption-column": any_text(), "--out": output_path(), "--encoder": any_text(),
        "--encoder-weights": st.one_of(st.sampled_from(["none", "auto", "imagenet"]), input_path()),
        "--image-size": sizes, "--trainable-stages": number(), "--feature-size": sizes, "--embedding-size": sizes,
        "--hidden-size": sizes, "--attention-size": sizes, "--dropout": number(), "--tokenizer": input_path(),
        "--batch-size": sizes, "--lr": number(), "--encoder-lr": number(), "--weight-decay": number(),
        "--warmup-steps": number(), "--clip-grad-norm": number(), "--attention-regularization": number(),
        "--patience": number(), "--max-caption-tokens": number(), "--max-time": number(),
        "--checkpoint-minutes": number(), "--seed": number(), "--epochs": small_number(),
    }
    base = ["--data", str(setup.captions), "--valid", str(setup.captions), "--out", File(kind="missing", name="run"),
            "--tokenizer", str(setup.tokenizer_file), "--encoder-weights", "none", "--image-size", "32",
            "--feature-size", "8", "--embedding-size", "8", "--hidden-size", "8", "--attention-size", "8",
            "--batch-size", "2", "--warmup-steps", "0", "--no-progress"]
    return Command(["train", "captioning"], base, flags, guards={"--epochs": "1"},
                   switches=("--attention", "--no-attention"))


def sentiment_table():
    rows = st.lists(st.tuples(st.one_of(plain_text(30), st.sampled_from(SPECIAL_TEXT)),
                              st.sampled_from(["0", "1", "2", "-1", "", "nan", "1.0", "yes"])), max_size=12)
    return st.one_of(rows.map(lambda rows: ("text,label\n" + "".join(
        f'"{text.replace(chr(34), chr(34) * 2)}",{label}\n' for text, label in rows)).encode()), random_bytes())


def train_sentiment_command(setup: Setup) -> Command:
    sizes = st.one_of(number(), st.sampled_from(["1", "8"]))
    flags = {
        "--data": input_path(sentiment_table()), "--valid": input_path(sentiment_table()), "--out": output_path(),
        "--resume": input_path(), "--text-column": any_text(), "--label-column": any_text(), "--vocab-size": number(),
        "--tokenizer": input_path(), "--cell": any_text(), "--embedding-size": sizes, "--hidden-size": sizes,
        "--layers": st.one_of(small_number(), st.just(str(10**9))), "--dropout": number(), "--batch-size": sizes,
        "--lr": number(), "--clip-grad-norm": number(), "--max-tokens": number(), "--seed": number(),
        "--device": SAMPLING["--device"], "--epochs": small_number(),
    }
    base = ["--data", str(setup.sentiment_csv), "--valid", str(setup.sentiment_csv), "--out",
            File(kind="missing", name="run"), "--tokenizer", str(setup.tokenizer_file), "--embedding-size", "8",
            "--hidden-size", "8", "--batch-size", "8", "--no-progress"]
    return Command(["train", "sentiment"], base, flags, guards={"--epochs": "1"})


def eval_commands(setup: Setup) -> list[Command]:
    return [
        Command(["eval", "completion"], ["--model", str(setup.lm), "--data", str(setup.corpus)],
                {"--model": input_path(), "--data": input_path(corpus_content()), "--text-column": any_text(),
                 "--split": any_text(), "--device": SAMPLING["--device"]}, switches=("--json",)),
        Command(["eval", "sentiment"], ["--model", str(setup.sentiment), "--data", str(setup.sentiment_csv)],
                {"--model": input_path(), "--data": input_path(sentiment_table()), "--split": any_text(),
                 "--baselines": input_path(sentiment_table()), "--text-column": any_text(),
                 "--label-column": any_text()}, switches=("--json",)),
        Command(["eval", "captioning"], ["--model", str(setup.captioner), "--data", str(setup.captions),
                                         "--max-new-tokens", "3", "--no-meteor"],
                {"--model": input_path(), "--data": input_path(), "--split": any_text(),
                 "--image-column": any_text(), "--caption-column": any_text(), "--num-beams": values_list(number()),
                 "--batch-size": number(), "--device": SAMPLING["--device"]},
                guards={"--max-new-tokens": "3"}, switches=("--json", "--no-progress")),
    ]


def inspect_command(setup: Setup) -> Command:
    flags = {"--model": input_path(), "--prompt": any_text(), "--layer": number(), "--top": number(),
             "--out": output_path(), "--max-tokens": number()}
    return Command(["inspect"], ["--model", str(setup.lm), "--prompt", "Shall I"], flags, switches=("--json",))


def lab_command() -> Command:
    flags = {"--cells": st.one_of(st.sampled_from(["lstm", "rnn,gru", ",", "lstm,lstm", "LSTM", "rnn, gru "]),
                                  any_text()),
             "--length": number(), "--distractors": st.one_of(st.sampled_from(["1", "1,2", "0", "1,,2", str(10**9)]),
                                                              number()),
             "--hidden-size": number(), "--clip": number(), "--seed": number(), "--out": output_path(),
             "--steps": small_number()}
    return Command(["lab", "gradients"], ["--cells", "lstm", "--length", "4", "--distractors", "1", "--hidden-size",
                                          "4"], flags, guards={"--steps": "2"}, switches=("--json",))


def serve_command(setup: Setup) -> Command:
    flags = {"--host": st.one_of(st.sampled_from(["127.0.0.1", "localhost", "::1", "0.0.0.0", "256.1.1.1",
                                                  "example.invalid", ""]), any_text()),
             "--port": st.one_of(st.sampled_from(["0", "-1", "1", "80", "65535", "65536", "99999"]), number()),
             "--model": st.one_of(st.sampled_from([f"completion={setup.lm}", f"captioning={setup.captioner}",
                                                   f"sentiment={setup.sentiment}", f"nope={setup.lm}", "=",
                                                   "completion=", f"completion={setup.corpus}"]), any_text()),
             "--concurrency": number(), "--models-dir": input_path(), "--max-prompt-chars": number()}
    return Command(["serve"], ["--port", "47123"], flags)


def tasks_command() -> Command:
    return Command(["tasks"], [], {"--json": st.just([])}, switches=("--json", "--help", "--version"))


@pytest.fixture
def launch_stub(monkeypatch):
    """`genseq serve` without a server: the app is not built, and launch only binds and frees the address.

    Binding still fails for a port or host the OS refuses, as Gradio's launch
    would, so the command's checks of --host and --port are exercised.
    """
    import socket
    import types

    from genseq.cli import serve

    def launch(app, host, port, **options):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))

    stub = types.SimpleNamespace(build_app=lambda *args, **options: None, launch=launch)
    monkeypatch.setattr(serve, "load_app_module", lambda: stub)


# ---------------------------------------------------------------- the properties


def run_example(argv: list, folder, stdin: bytes | None = b"") -> None:
    check(materialize(argv, folder()), stdin)


@fuzz_settings(1.0)
@given(data=st.data())
def test_tasks_ends_cleanly_for_any_arguments(data, folder):
    run_example(data.draw(command_argv(tasks_command())), folder)


@fuzz_settings(2.0)
@given(data=st.data())
def test_generate_ends_cleanly_for_any_options(setup, data, folder):
    run_example(data.draw(command_argv(generate_command(setup))), folder)


@fuzz_settings(1.0)
@given(prompt=st.one_of(any_text(), long_text()), stdin=st.one_of(st.none(), random_bytes(), long_text().map(str.encode)),
       flags=st.sampled_from([[], ["--json"], ["--stream"], ["--suggest", "3"], ["--num-beams", "2"]]))
def test_generate_ends_cleanly_for_any_prompt_or_standard_input(setup, prompt, stdin, flags, folder):
    """Prompts of any size and content, directly or read from a standard input that may be closed."""
    for given_prompt in (prompt, "-"):
        run_example(["generate", "--model", str(setup.lm), "--prompt", given_prompt, "--max-new-tokens", "4", *flags],
                    folder, stdin=stdin)


@fuzz_settings(1.0)
@given(data=st.data())
def test_generate_captioning_ends_cleanly_for_any_image_or_options(setup, data, folder):
    run_example(data.draw(command_argv(captioning_command(setup))), folder)


@fuzz_settings(1.0)
@given(data=st.data())
def test_generate_sentiment_ends_cleanly_for_any_text_or_options(setup, data, folder):
    run_example(data.draw(command_argv(sentiment_command(setup))), folder)


@fuzz_settings(1.0)
@given(data=st.data())
def test_train_completion_ends_cleanly_for_any_options_or_corpus(setup, data, folder):
    run_example(data.draw(command_argv(train_completion_command(setup))), folder)


@fuzz_settings(0.4)
@given(data=st.data())
def test_train_captioning_ends_cleanly_for_any_options(setup, data, folder):
    run_example(data.draw(command_argv(train_captioning_command(setup))), folder)


@fuzz_settings(0.8)
@given(data=st.data())
def test_train_sentiment_ends_cleanly_for_any_options_or_table(setup, data, folder):
    run_example(data.draw(command_argv(train_sentiment_command(setup))), folder)


@fuzz_settings(1.0)
@given(data=st.data())
def test_eval_ends_cleanly_for_any_options_or_data(setup, data, folder):
    command = data.draw(st.sampled_from(eval_commands(setup)))
    run_example(data.draw(command_argv(command)), folder)


@fuzz_settings(1.0)
@given(data=st.data())
def test_inspect_ends_cleanly_for_any_options(setup, data, folder):
    run_example(data.draw(command_argv(inspect_command(setup))), folder)


@fuzz_settings(0.8)
@given(data=st.data())
def test_lab_ends_cleanly_for_any_options(data, folder):
    run_example(data.draw(command_argv(lab_command())), folder)


@fuzz_settings(1.0)
@given(data=st.data())
def test_serve_refuses_bad_arguments_cleanly_without_serving(setup, launch_stub, data, folder):
    run_example(data.draw(command_argv(serve_command(setup))), folder)


def checkpoint_commands(setup: Setup, directory: str, which: str) -> list[list[str]]:
    """Commands that load the damaged checkpoint, each bounded to a few tokens."""
    if which == "lm":
        return [["generate", "--model", directory, "--prompt", "Shall I", "--max-new-tokens", "3", "--seed", "1"],
                ["inspect", "--model", directory, "--prompt", "Shall I"],
                ["eval", "completion", "--model", directory, "--data", str(setup.corpus)]]
    if which == "sentiment":
        return [["generate", "--task", "sentiment", "--model", directory, "--text", "good flight"],
                ["eval", "sentiment", "--model", directory, "--data", str(setup.sentiment_csv)]]
    return [["generate", "--task", "captioning", "--model", directory, "--image", str(setup.captions / "0.png"),
             "--max-new-tokens", "3"]]


@fuzz_settings(2.0)
@given(data=st.data())
def test_a_damaged_checkpoint_is_refused_cleanly_by_every_command_that_loads_it(setup, data, folder):
    which = data.draw(st.sampled_from(["lm", "lm", "sentiment", "captioner"]))
    source = {"lm": setup.lm, "sentiment": setup.sentiment, "captioner": setup.captioner}[which]
    damage = data.draw(damaged_checkpoint(source))
    directory = copy_with_damage(source, folder() / "model", damage)
    argv = data.draw(st.sampled_from(checkpoint_commands(setup, str(directory), which)))
    run_example(argv, folder)


@fuzz_settings(0.6)
@given(data=st.data())
def test_resuming_from_a_damaged_last_checkpoint_is_refused_cleanly(setup, data, folder):
    files = ("config.json", "model.safetensors", "training_state.json", "training_state.safetensors")
    damage = data.draw(damaged_checkpoint(setup.lm / "last", files))
    run = folder() / "run"
    shutil.copytree(setup.lm, run)
    copy_with_damage(setup.lm / "last", run / "last-damaged", damage)
    shutil.rmtree(run / "last")
    (run / "last-damaged").rename(run / "last")
    run_example(["train", "completion", "--data", str(setup.corpus), "--resume", str(run), "--max-steps", "42",
                 "--no-progress"], folder)


@fuzz_settings(1.0)
@given(words=st.lists(st.one_of(st.sampled_from(["tasks", "train", "completion", "eval", "generate", "inspect", "lab",
                                                 "gradients", "serve", "sentiment", "captioning", "--help", "-h",
                                                 "--json", "--model", "--prompt", "--data", "--", "-"]),
                                any_text()), max_size=6))
def test_any_word_list_ends_cleanly(words, folder, launch_stub):
    """Commands, flags and junk in any order: usage errors are one line, and nothing runs long."""
    if "train" in words or "lab" in words:
        words = [word for word in words if word not in ("train", "lab")]  # base-less training would take minutes
    run_example(words, folder)
