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
from typing import Any, ClassVar, Iterator

from .errors import ConfigError

INPUT_KINDS = ("text", "image")
OUTPUT_KINDS = ("text", "ranked", "image", "label", "number", "json")
# ranked: a list of {"label", "prob"} most likely first; label: {"label", "prob"}.


@dataclass(frozen=True)
class _Port:
    """A named, typed input or output; the subclass says which kinds it accepts."""

    name: str
    kind: str
    description: str = ""
    KINDS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        if self.kind not in self.KINDS:
            role = type(self).__name__.lower()
            raise ConfigError(f"{role} {self.name!r} has kind {self.kind!r}; kinds are {', '.join(self.KINDS)}")


class Input(_Port):
    KINDS = INPUT_KINDS


class Output(_Port):
    KINDS = OUTPUT_KINDS


@dataclass(frozen=True)
class Option:
    """A typed option with a default; numbers may have bounds, strings a list of choices."""

    name: str
    default: Any
    help: str = ""
    type: type | None = None  # inferred from the default when None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False  # (minimum, maximum] instead of [minimum, maximum]
    choices: tuple | None = None

    @property
    def value_type(self) -> type:
        return self.type or type(self.default)

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
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(f"option {self.name} must be one of {', '.join(map(str, self.choices))}, not {value!r}")
        low_ok = self.minimum is None or (converted > self.minimum if self.exclusive_minimum else converted >= self.minimum)
        high_ok = self.maximum is None or converted <= self.maximum
        if not (low_ok and high_ok):
            raise ConfigError(f"option {self.name} must be in {self.range_text()}, not {value!r}")
        return converted

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


class Task:
    """Base class of every task plugin. Subclasses set the class attributes and implement load and predict."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    inputs: ClassVar[tuple[Input, ...]] = ()
    outputs: ClassVar[tuple[Output, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    echo_input: ClassVar[str | None] = None  # a text input that the first text output continues

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

    # ---- optional: `genseq train NAME` and `genseq eval NAME` ----------------------
    # Either override these classmethods, or name a module in `commands` that defines
    # add_train_arguments(parser) and run_train(args) -> int, and/or add_eval_arguments(parser)
    # and run_eval(args) -> dict: it is imported only when those commands are built.
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
        """All options with defaults filled in; unknown or out-of-range ones raise ConfigError."""
        known = {option.name: option for option in cls.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ConfigError(f"task {cls.name} has no option {', '.join(unknown)}; its options are: {valid}")
        return {name: option.check(options[name]) if name in options else option.default for name, option in known.items()}

    @classmethod
    def check_inputs(cls, inputs: dict) -> dict:
        missing = [item.name for item in cls.inputs if item.name not in inputs]
        if missing:
            raise ConfigError(f"task {cls.name} needs the input {', '.join(missing)}")
        return inputs

    @classmethod
    def describe(cls) -> dict:
        """The declaration as JSON-able data."""
        return {
            "name": cls.name,
            "description": cls.description,
            "inputs": [asdict(item) for item in cls.inputs],
            "outputs": [asdict(item) for item in cls.outputs],
            "options": [option.describe() for option in cls.options],
        }
