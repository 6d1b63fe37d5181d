"""The task contract: what a task plugin declares and the methods it implements.

A task declares its name, a one-line description, typed inputs and outputs,
and options with defaults and bounds. The CLI and the web app build their
controls from that declaration alone, so a new task needs no change to either.
A task loads its model lazily on first use and runs on one input, a batch, or
as a stream of partial outputs.
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

from .errors import ConfigError, GenseqError

# The contract's version: a task declaring another major version was built for a contract this genseq
# does not offer, and is listed as incompatible instead of loaded.
API_VERSION = "1.0"
INPUT_KINDS = ("text", "image")
OUTPUT_KINDS = ("text", "ranked", "image", "label", "number", "json", "table")
# ranked: a list of {"label", "prob"} most likely first; label: {"label", "prob"};
# table: a list of rows, each a dict {column: value} with the same columns in the same order.
EXAMPLE_NAME_CHARS = 40  # an unnamed example's button shows the start of its first line
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")  # an example value ending so names a picture


def label_of(name: str) -> str:
    """What a front end calls an input, output or option that declares no label: its name with spaces."""
    return name.replace("_", " ")


@dataclass(frozen=True)
class _Port:
    """A named, typed input or output; the subclass says which kinds it accepts.

    label is what the web app calls it (the name with spaces when empty); placeholder
    is the hint a text input shows while it is empty.
    """

    name: str
    kind: str
    description: str = ""
    label: str = ""
    placeholder: str = ""
    KINDS: ClassVar[tuple[str, ...]] = ()

    @property
    def shown_label(self) -> str:
        return self.label or label_of(self.name)

    def __post_init__(self):
        if self.kind not in self.KINDS:
            role = type(self).__name__.lower()
            raise ConfigError(f"{role} {self.name!r} has kind {self.kind!r}; kinds are {', '.join(self.KINDS)}")


class Input(_Port):
    KINDS = INPUT_KINDS


@dataclass(frozen=True)
class Output(_Port):
    """An output; an advanced one is a detail the web app folds away, like a json output beside friendlier ones."""

    advanced: bool = False
    KINDS: ClassVar[tuple[str, ...]] = OUTPUT_KINDS


@dataclass(frozen=True)
class Option:
    """A typed option with a default; numbers may have bounds, strings a list of choices (a tuple option: a
    subset of them).

    How front ends present it: advanced options sit under the web app's "More options"; a server_side one
    (a path the server writes, say) is the command line's alone and never reaches a web or API client;
    app_default, when not None, is the value the web app's control starts at instead of default; label is the
    control's plain name (the name with spaces when empty), which the app's error messages use too;
    app_maximum, for a number without a maximum, is the top of the app's control (a slider when the option has a
    minimum), the values people want, while the command line and API still take any larger one.
    choices_from_model: a string option whose choices the model gives (Task.choices_from_model, such as its style
    labels), empty for none of them: the web app shows a drop-down of the selected model's, hidden when it has none.
    """

    name: str
    default: Any
    help: str = ""
    type: type | None = None  # inferred from the default when None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False  # (minimum, maximum] instead of [minimum, maximum]
    choices: tuple | None = None
    advanced: bool = False
    server_side: bool = False
    app_default: Any = None
    label: str = ""
    app_maximum: float | None = None
    choices_from_model: bool = False

    @property
    def value_type(self) -> type:
        return self.type or type(self.default)

    @property
    def shown_label(self) -> str:
        return self.label or label_of(self.name)

    @property
    def shown_maximum(self) -> float | None:
        """The top of the web app's control: the option's maximum, else its app_maximum."""
        return self.maximum if self.maximum is not None else self.app_maximum

    @property
    def shown_default(self) -> Any:
        """The value the web app's control starts at."""
        return self.default if self.app_default is None else self.app_default

    def check(self, value: Any) -> Any:
        """Return value converted to the option's type, or raise ConfigError naming the option and its range."""
        kind = self.value_type
        if value is None and self.default is None:
            return None
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
                raise TypeError
            if kind is tuple and isinstance(value, str):
                value = (value,)
            converted = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {self.name} must be {kind.__name__}, not {value!r}") from None
        if self.choices is not None and not self._among_choices(converted):
            what = "only items among" if kind in (tuple, list) else "one of"
            raise ConfigError(f"option {self.name} must be {what} {', '.join(map(str, self.choices))}, not {value!r}")
        low_ok = self.minimum is None or (converted > self.minimum if self.exclusive_minimum else converted >= self.minimum)
        high_ok = self.maximum is None or converted <= self.maximum
        if not (low_ok and high_ok):
            raise ConfigError(f"option {self.name} must be in {self.range_text()}, not {value!r}")
        return converted

    def _among_choices(self, value) -> bool:
        if self.value_type in (tuple, list):
            return all(item in self.choices for item in value)
        return value in self.choices

    def range_text(self) -> str:
        low = "-inf" if self.minimum is None else _number_text(self.minimum)
        high = "inf" if self.maximum is None else _number_text(self.maximum)
        return f"{'(' if self.exclusive_minimum or self.minimum is None else '['}{low}, {high}{']' if self.maximum is not None else ')'}"

    def describe(self) -> dict:
        data = asdict(self)
        data["type"] = self.value_type.__name__
        return data


def _number_text(bound: float) -> str:
    """A bound as typed: integers in full (2**63 - 1 is not 9.22337e+18), other numbers short."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


@dataclass(frozen=True)
class Action:
    """A secondary way to run the task from its web tab: a button of its own that runs the task with the task's
    options named here and shows the outputs named here (API name TASK_ACTION, e.g. /completion_suggest).

    The main Run leaves those options at their defaults and those outputs alone. continues names a text input:
    a label picked from the action's first (ranked) output continues that input (it completes the word the
    input ends in, or follows it after a space), and the action runs again on the longer input. shares names
    options of the main Run the action takes too, from the same controls (completion's suggestions, its style).
    """

    name: str
    label: str  # the button's text
    options: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    continues: str | None = None
    shares: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    """A named example: label is the text of its button in the web app, values maps input names to values
    (image paths relative to the task's package). A task's examples may also be plain {input name: value} dicts,
    which the app names by their text or image file."""

    label: str
    values: dict


@dataclass(frozen=True)
class TextTraining:
    """That a task's model can be trained from plain texts (the web app's Train tab), and how: `genseq train NAME`
    with the data, validation, output and time-budget flags named here, the flags of the starting point picked
    (starts: its name in words -> its flags, in order), and --OPTION-NAME VALUE for each option given (None, the
    default, leaves a flag out: the command's own default, which may depend on the start, holds).

    samples: a few runs of the trained model, each {input or option name: value}, shown when training ends.
    """

    starts: dict[str, tuple[str, ...]]
    options: tuple[Option, ...] = ()
    samples: tuple[dict, ...] = ()
    data_flag: str = "--data"
    valid_flag: str = "--valid"
    out_flag: str = "--out"
    budget_flag: str = "--max-time"  # takes seconds

    def command(self, task: str, start: str, data: str, valid: str, out: str, seconds: float,
                options: dict) -> list[str]:
        """The arguments of `genseq` that train the task's model; ConfigError for an unknown start or option, or
        an option's value out of its range."""
        if start not in self.starts:
            raise ConfigError(f"starting point {start!r} is not one of {', '.join(self.starts)}")
        known = {option.name: option for option in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"training has no option {', '.join(unknown)}; its options are: {', '.join(known) or 'none'}")
        words = ["train", task, self.data_flag, data, self.valid_flag, valid, self.out_flag, out,
                 self.budget_flag, f"{seconds:g}", *self.starts[start]]
        for name, value in options.items():
            checked = known[name].check(value)
            if checked is not None:
                words += ["--" + name.replace("_", "-"), str(checked)]
        return words


class Task:
    """Base class of every task plugin. Subclasses set the class attributes and implement load and predict."""

    api_version: ClassVar[str] = API_VERSION  # the contract version the task is written for
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    inputs: ClassVar[tuple[Input, ...]] = ()
    outputs: ClassVar[tuple[Output, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    echo_input: ClassVar[str | None] = None  # a text input that the first text output continues
    # What the web app shows beside the inputs and outputs:
    examples: ClassVar[tuple[Example | dict, ...]] = ()  # named Examples, or plain {input name: value} dicts
    actions: ClassVar[tuple[Action, ...]] = ()  # secondary buttons, such as completion's "Suggest next words"
    # The checkpoint kinds (config.json "kind") load() takes, offered in the tab's model box: () for a task that
    # loads no checkpoint (no model box), None when undeclared (every checkpoint is offered).
    model_kinds: ClassVar[tuple[str, ...] | None] = None
    text_training: ClassVar[TextTraining | None] = None  # None: its model is not trained from the web app

    def __init__(self, model: str | None = None, device: str = "cpu"):
        self.model_path, self.device = model, device
        self._model: Any = None
        self._lock = threading.Lock()

    # ---- what a plugin implements ---------------------------------------------
    def load(self, model_path: str | None) -> Any:
        """Load and return the model; model_path None means the task's default model."""
        raise NotImplementedError

    def predict(self, model: Any, batch: list[dict], options: dict) -> list[dict]:
        """Outputs (one dict keyed by output name) for each input dict of batch."""
        raise NotImplementedError

    def predict_stream(self, model: Any, inputs: dict, options: dict) -> Iterator[dict]:
        """Partial outputs for one input, each a complete dict so far; by default just the final one."""
        yield self.predict(model, [inputs], options)[0]

    @classmethod
    def stream_refusal(cls, options: dict) -> str | None:
        """Why predict_stream gives only the final output for these checked options, or None when it streams."""
        return None

    @classmethod
    def default_model_dir(cls) -> str | None:
        """The checkpoint directory load(None) reads, whose model card the web app shows; None when there is none."""
        return None

    @classmethod
    def model_card(cls, model_path: str | None = None) -> dict | None:
        """The card of the checkpoint model_path (None: the default model), as genseq.checkpoint.read_card gives it,
        or None when there is no checkpoint to describe."""
        try:
            directory = model_path or cls.default_model_dir()
            if directory is None:
                return None
            from .cards import read_card  # reads checkpoint headers with torch's loaders: only when there is one

            return read_card(directory)
        except GenseqError:  # no model to describe (a default not installed, say) is no reason to fail a page
            return None

    @classmethod
    def choices_from_model(cls, option: str, directory: str) -> tuple[str, ...]:
        """The choices the checkpoint in directory offers for an option declared with choices_from_model, read
        without loading its model (the web app asks at each pick of its model box); none unless overridden."""
        return ()

    @classmethod
    def option_choices(cls, option: str, model_path: str | None = None) -> tuple[str, ...]:
        """choices_from_model for the checkpoint model_path (None: the default model); () when there is none."""
        try:
            directory = model_path or cls.default_model_dir()
        except GenseqError:  # a default not installed offers no choices
            return ()
        return tuple(cls.choices_from_model(option, str(directory))) if directory else ()

    @classmethod
    def streams(cls) -> bool:
        """Whether the task yields partial outputs (it overrides predict_stream), so a front end can offer Stop."""
        return cls.predict_stream is not Task.predict_stream

    # ---- optional: `genseq train NAME` and `genseq eval NAME` ----------------------
    # Either override these classmethods, or name a module in `commands` that defines
    # add_train_arguments(parser) and run_train(args) -> int, and/or add_eval_arguments(parser)
    # and run_eval(args) -> dict (and optionally format_metrics(metrics) -> str, its human output):
    # it is imported only when those commands are built.
    commands: ClassVar[str | None] = None  # dotted module name, relative ones (".cli") to the task's package

    @classmethod
    def add_train_arguments(cls, parser) -> None:
        """Add the flags of `genseq train NAME` to an argparse parser; a task without training leaves this alone."""
        cls._command("add_train_arguments")(parser)

    @classmethod
    def train(cls, args) -> int:
        """Run `genseq train NAME` with the parsed flags; returns the exit code."""
        return cls._command("run_train")(args)

    @classmethod
    def add_eval_arguments(cls, parser) -> None:
        """Add the flags of `genseq eval NAME`."""
        cls._command("add_eval_arguments")(parser)

    @classmethod
    def evaluate(cls, args) -> dict:
        """Run `genseq eval NAME`; returns the metrics (printed as a table, or as JSON with --json)."""
        return cls._command("run_eval")(args)

    @classmethod
    def format_metrics(cls, metrics: dict) -> str | None:
        """`genseq eval NAME`'s metrics worded for people, when the task words them; None prints them a line each."""
        function = cls._command("format_metrics", required=False)
        return function(metrics) if function else None

    @classmethod
    def trainable(cls) -> bool:
        return cls.train.__func__ is not Task.train.__func__ or cls._command("run_train", required=False) is not None

    @classmethod
    def evaluable(cls) -> bool:
        return cls.evaluate.__func__ is not Task.evaluate.__func__ or cls._command("run_eval", required=False) is not None

    @classmethod
    def _command(cls, name: str, required: bool = True):
        module = None
        if cls.commands:
            owner = next(klass for klass in cls.__mro__ if "commands" in vars(klass))  # ".cli" is relative to it
            module = importlib.import_module(cls.commands, sys.modules[owner.__module__].__package__)
        function = getattr(module, name, None)
        if function is None and required:
            raise NotImplementedError(f"task {cls.name} has no {name}")
        return function

    # ---- what callers use --------------------------------------------------------
    @property
    def model(self) -> Any:
        """The model, loaded on first use (once, even with concurrent callers)."""
        with self._lock:
            if self._model is None:
                self._model = self.load(self.model_path)
            return self._model

    def run(self, inputs: dict, **options) -> dict:
        return self.run_batch([inputs], **options)[0]

    def run_batch(self, batch: list[dict], **options) -> list[dict]:
        checked = self.check_options(options)
        return self.predict(self.model, [self.check_inputs(item) for item in batch], checked)

    def stream(self, inputs: dict, **options) -> Iterator[dict]:
        checked = self.check_options(options)
        yield from self.predict_stream(self.model, self.check_inputs(inputs), checked)

    def to_json(self, batch: list[dict], results: list[dict]):
        """The JSON document `genseq generate --json` prints: by default the result, or the list of results."""
        return results[0] if len(results) == 1 else results

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """All options with defaults filled in, as CheckedOptions; unknown or out-of-range ones raise ConfigError."""
        known = {option.name: option for option in cls.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ConfigError(f"task {cls.name} has no option {', '.join(unknown)}; its options are: {valid}")
        checked = {name: option.check(options[name]) if name in options else option.default for name, option in known.items()}
        return CheckedOptions(checked, given={name for name in options if checked[name] != known[name].default})

    @classmethod
    def check_inputs(cls, inputs: dict) -> dict:
        missing = [item.name for item in cls.inputs if item.name not in inputs]
        if missing:
            raise ConfigError(f"task {cls.name} needs the input {', '.join(missing)}")
        return inputs

    @classmethod
    def example_inputs(cls) -> list[dict]:
        """The declared examples' values, with each image input's relative path resolved against the task's package."""
        folder = Path(sys.modules[cls.__module__].__file__).parent
        images = {item.name for item in cls.inputs if item.kind == "image"}
        return [{name: str(folder / value) if name in images else value for name, value in _values(example).items()}
                for example in cls.examples]

    @classmethod
    def example_labels(cls) -> list[str]:
        """A name for each example: its declared label, else its first value (an image by its file name)."""
        return [example.label if isinstance(example, Example) else _example_name(example) for example in cls.examples]

    @classmethod
    def check_declaration(cls) -> None:
        """Raise ConfigError when an example or action names an input, option or output the task does not declare."""
        inputs, options = {item.name for item in cls.inputs}, {option.name for option in cls.options}
        outputs, texts = {item.name for item in cls.outputs}, {item.name for item in cls.inputs if item.kind == "text"}
        for example in cls.examples:
            named = not isinstance(example, Example) or isinstance(example.label, str) and example.label.strip()
            if not (named and isinstance(_values(example), dict)):
                raise ConfigError(f"an example of task {cls.name} is {example!r}; declare Example(label, "
                                  "{input name: value}) with a label, or a plain {input name: value} dict")
            _check_names(f"an example of task {cls.name}", "input", set(_values(example)), inputs)
        for action in cls.actions:
            where = f"action {action.name} of task {cls.name}"
            _check_names(where, "option", {*action.options, *action.shares}, options)
            _check_names(where, "output", set(action.outputs), outputs)
            if action.continues is not None and (action.continues not in texts or not action.outputs):
                raise ConfigError(f"{where} continues {action.continues!r}, which needs a text input of that name "
                                  "and an output to pick from")

    @classmethod
    def describe(cls) -> dict:
        """The declaration as JSON-able data."""
        return {
            "name": cls.name,
            "description": cls.description,
            "inputs": [asdict(item) for item in cls.inputs],
            "outputs": [asdict(item) for item in cls.outputs],
            "options": [option.describe() for option in cls.options],
            "actions": [asdict(action) for action in cls.actions],
            "examples": [_values(example) for example in cls.examples],
            "example_labels": cls.example_labels(),
            "model_kinds": None if cls.model_kinds is None else list(cls.model_kinds),
        }


def _values(example: Example | dict) -> dict:
    return example.values if isinstance(example, Example) else example


def _example_name(example: dict) -> str:
    value = str(next(iter(example.values()), ""))
    if value.lower().endswith(IMAGE_SUFFIXES):
        return Path(value).stem.replace("_", " ")
    line = value.splitlines()[0] if value else ""
    return line if len(line) <= EXAMPLE_NAME_CHARS else line[: EXAMPLE_NAME_CHARS - 1] + "…"


def _check_names(where: str, role: str, named: set[str], declared: set[str]) -> None:
    unknown = sorted(named - declared)
    if unknown:
        raise ConfigError(f"{where} names the {role} {', '.join(unknown)}, which the task does not declare; "
                          f"its {role}s: {', '.join(sorted(declared)) or 'none'}")


# ==== checked options and the generation engine's options =====================================================
# A generative task lists generation_options() among its options (overriding defaults or leaving some out) and
# turns the checked values into a GenerationConfig with generation_config(), so every task offers the same
# names, bounds and checks. The engine's config module imports no torch, and only these functions import it.


class CheckedOptions(dict):
    """A task's options, checked and with the defaults filled in; .given names those the caller chose.

    An option passed at its declared default counts as not given: a front end such
    as the web app passes every control's value, and there a choice cannot be told
    from the default. generation_config lets the others yield to beam search.
    """

    def __init__(self, values: dict, given: set[str] = frozenset()):
        super().__init__(values)
        self.given = frozenset(given)


# task option name -> GenerationConfig field, where they differ
_FIELDS = {"no_repeat_ngram": "no_repeat_ngram_size", "banned_ids": "banned_token_ids"}
# The engine's options a task shows in view unless it names its own (generation_options' primary)
PRIMARY = ("max_new_tokens", "temperature", "top_k", "top_p", "num_beams", "seed")
# What None means for an option that a task may declare with the default None although the engine's is a number
_NONE_MEANS = {"num_return_sequences": "none: one per beam (one when sampling)"}


def generation_options(without: tuple[str, ...] = (), primary: tuple[str, ...] | None = None,
                       **defaults) -> tuple[Option, ...]:
    """The engine's options, less those named in without, with defaults overridden by keyword.

    primary names the options the web app shows in view, the others going under its advanced section
    (None: the engine's own few, PRIMARY). num_return_sequences=None returns one sequence per beam (one when
    sampling) unless the caller asks for more.
    """
    options = _engine_options()
    known = {option.name for option in options}
    unknown = (set(without) | set(defaults) | set(primary or ())) - known
    if unknown:
        raise ValueError(f"no generation option {', '.join(sorted(unknown))}")
    shown = PRIMARY if primary is None else primary
    return tuple(_with_default(option, defaults.get(option.name, option.default), advanced=option.name not in shown)
                 for option in options if option.name not in without)


def generation_config(options: dict):
    """The GenerationConfig of checked task options (others are ignored) and its seed.

    The options the caller did not give (all but options.given, from check_options;
    every option of a plain dict counts as given) are defaults, which yield to beam
    search instead of conflicting with it (GenerationConfig.defaulted).
    max_new_tokens above the engine's cap is capped with a warning; without a
    seed a fresh one is drawn, so the run can be repeated.
    """
    import secrets
    import warnings

    from .generation.config import MAX_NEW_TOKENS, GenerationConfig

    fields = {option.name: _FIELDS.get(option.name, option.name) for option in _engine_options() if option.name in options}
    engine = {field: options[name] for name, field in fields.items()}
    given = getattr(options, "given", options.keys())
    engine["defaulted"] = frozenset(field for name, field in fields.items() if name not in given)
    if engine.get("num_return_sequences", 1) is None:
        engine["num_return_sequences"] = engine.get("num_beams", 1)
    if "banned_token_ids" in engine:
        engine["banned_token_ids"] = _token_ids(engine["banned_token_ids"])
    if engine.get("min_new_tokens", 0) > engine.get("max_new_tokens", MAX_NEW_TOKENS):
        raise ConfigError(f"option min_new_tokens ({engine['min_new_tokens']}) must not exceed max_new_tokens "
                          f"({engine['max_new_tokens']}); lower it or raise max_new_tokens")
    if engine.get("max_new_tokens", 0) > MAX_NEW_TOKENS:
        warnings.warn(f"max_new_tokens {engine['max_new_tokens']} is capped at {MAX_NEW_TOKENS}", stacklevel=3)
        engine["max_new_tokens"] = MAX_NEW_TOKENS
        engine["min_new_tokens"] = min(engine.get("min_new_tokens", 0), MAX_NEW_TOKENS)  # within the cap, as asked
    if engine.get("seed") is None:
        engine["seed"] = secrets.randbits(31)
    return GenerationConfig(**engine), engine["seed"]


def _engine_options() -> tuple[Option, ...]:
    from .generation.config import MAX_NEW_TOKENS, PRECISIONS

    return (
        Option("max_new_tokens", 100, "how many tokens to generate at most",
               minimum=1, app_maximum=MAX_NEW_TOKENS),
        Option("temperature", 1.0, "higher writes more surprising text, lower more predictable; 0 always takes the "
               "likeliest token", minimum=0.0, app_maximum=2.0),
        Option("top_k", 0, "pick only among this many likeliest tokens; 0 for no limit", minimum=0, app_maximum=500,
               label="top-k"),
        Option("top_p", 1.0, "pick only among the likeliest tokens that together hold this probability; "
               "1 keeps all", minimum=0.0, maximum=1.0, exclusive_minimum=True, label="top-p"),
        Option("min_p", 0.0, "drop tokens less likely than this times the likeliest one", minimum=0.0, maximum=1.0,
               label="min-p"),
        Option("typical_p", 1.0, "locally typical sampling: keep the tokens about as surprising as usual that hold "
               "this probability", minimum=0.0, maximum=1.0, exclusive_minimum=True, label="typical-p"),
        Option("repetition_penalty", 1.0, "above 1 makes tokens already written less likely", minimum=0.0,
               exclusive_minimum=True, app_maximum=3.0, label="repetition penalty"),
        Option("no_repeat_ngram", 0, "never repeat a run of this many tokens; 0 allows any", minimum=0, app_maximum=10,
               label="no repeated runs of"),
        Option("min_new_tokens", 0, "the end of the text may come only after this many tokens", minimum=0,
               app_maximum=MAX_NEW_TOKENS),
        Option("num_beams", 1, "beam search: follow this many candidate texts and keep the likeliest; 1 samples",
               minimum=1, maximum=64, label="beams"),
        Option("length_penalty", 1.0, "beams are ranked by log-probability / length ** this; above 0 favours "
               "longer ones", label="length penalty"),
        Option("num_return_sequences", 1, "how many texts to return", type=int, minimum=1, maximum=64,
               label="texts returned"),
        Option("stop", (), "stop when the text contains one of these strings (left out of it)", type=tuple,
               label="stop at"),
        Option("banned_ids", (), "token ids never generated (numbers from the tokenizer's vocabulary)", type=tuple,
               label="banned token ids"),
        Option("max_time", None, "stop after this many seconds", type=float, minimum=0.0, exclusive_minimum=True,
               label="time limit (seconds)"),
        Option("seed", None, "the same seed and settings give the same text again; empty draws a fresh one",
               type=int, minimum=0, maximum=2**63 - 1),
        Option("precision", "fp32", "of the decoding step; auto: the faster of fp32 and bf16 here, measured; "
               "int8: fastest on most CPUs, +0.3% perplexity", choices=PRECISIONS),
    )


def _with_default(option: Option, default, advanced: bool) -> Option:
    """option with another default; None only where the engine's default is None or _NONE_MEANS says what it does."""
    fields = {**vars(option), "default": default, "advanced": advanced}
    if default is None and option.default is not None:
        if option.name not in _NONE_MEANS:
            raise ValueError(f"generation option {option.name} cannot default to None")
        fields["help"] = f"{option.help}; {_NONE_MEANS[option.name]}"
    return Option(**fields)


def _token_ids(values) -> tuple[int, ...]:
    try:
        return tuple(int(value) for value in values)
    except (TypeError, ValueError):
        raise ConfigError(f"option banned_ids must hold token ids (integers), not {list(values)!r}") from None
