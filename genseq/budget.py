"""Budget-aware training defaults: the model, tokenizer and optimisation a time or step budget buys on this machine.

A run from scratch given a budget (--max-time or --max-steps) and no model,
tokenizer or optimisation flags gets them from here, chosen from three facts:
the corpus size, the budget, and this machine's speed at each model size
(measured for a few seconds before training, when the budget is a time). Every
flag the user gives wins; the rest is chosen around it.

The rule (see docs/training.md for its sweep, benchmarks/budget_sweep.py):

- Size. A larger model pays off only once it has seen enough tokens; below that
  a smaller one, which reads more tokens in the same time, ends lower. SIZES
  lists the sizes in order with the tokens each needs to beat the one before
  (measured up to 384, extrapolated beyond); the rule takes the largest whose need the budget meets, counting
  the tokens each size would read in this budget on this machine.
- Vocabulary. Each size has the BPE vocabulary that was best with it. A small
  vocabulary means short pieces: cheap output layer, and every piece seen often
  in a short run. It never exceeds what the corpus supports (one piece per
  MIN_BYTES_PER_PIECE bytes); a tiny corpus gets characters.
- Dropout. From the epochs the budget will make over the corpus: none for a
  first pass, more as the model reads the same text again.
- Schedule. The learning rate of the size, warm-up a small share of the
  expected steps, cosine decay to the end of the budget, a few validations.

A fine-tune (--init) keeps its checkpoint's model and tokenizer; the same rule
gives it dropout from its epochs and warm-up and validation from its steps.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

from .errors import ConfigError, GenseqError


@dataclass(frozen=True)
class Size:
    """One model size of the rule: a tied LSTM (embedding as wide as the hidden state), its BPE vocabulary and the
    learning rate and batch it trains with, and the tokens it must read within a budget to beat the size before."""

    hidden: int
    layers: int
    vocab: int
    lr: float
    batch: int
    needs: float


# Measured (benchmarks/budget_sweep.py, docs/training.md#budget-aware-defaults) up to 512; the larger sizes
# continue the trend (about three times the tokens for each step up) towards the shipped default's recipe.
SIZES = (
    Size(256, 1, 512, 5e-3, 16, 0),
    Size(384, 1, 512, 5e-3, 16, 1_500_000),
    Size(512, 1, 512, 5e-3, 32, 5_000_000),
    Size(768, 1, 1024, 4e-3, 32, 15_000_000),
    Size(1024, 1, 2048, 3e-3, 32, 45_000_000),
    Size(1024, 2, 4096, 3e-3, 32, 135_000_000),
)
BPTT = 64
MIN_BYTES_PER_PIECE = 200  # the vocabulary is at most the corpus's bytes / this
CHAR_BELOW = 100_000  # bytes: a corpus smaller than this is tokenized by characters
CHAR_VOCABULARY = 400
# Dropout by the epochs a run makes over its corpus: (at most this many epochs, dropout).
DROPOUT_BY_EPOCHS = ((1.0, 0.0), (12.0, 0.1), (30.0, 0.2), (math.inf, 0.3))
# Characters per piece of a vocabulary, measured on Shakespeare's valid split (4096 between its neighbours); prose
# has longer words, so a run over it makes somewhat more epochs than estimated.
CHARS_PER_PIECE = {512: 1.8, 1024: 2.3, 2048: 2.6, 4096: 2.8, 8000: 3.0}
# Validations per run: about 5, and one at least every VALIDATE_MINUTES of a time budget (a stopped run keeps the
# model of its last validation), at most MAX_VALIDATIONS: scoring the valid split costs wall-clock time.
VALIDATIONS, VALIDATE_MINUTES, MAX_VALIDATIONS = 5, 2.0, 20
WARMUP_SHARE, MAX_WARMUP = 0.03, 100

DROPOUTS = ("embedding_dropout", "layer_dropout", "output_dropout")


@dataclass(frozen=True)
class Choice:
    value: object
    reason: str


def corpus_bytes(source) -> int | None:
    """The training text's size in bytes: its files', or a loaded dataset's table; None for a stream."""
    paths = getattr(source, "paths", None)
    if paths is not None:
        return sum(path.stat().st_size for path in paths)
    data = getattr(getattr(source, "dataset", None), "data", None)
    return getattr(data, "nbytes", None)


def training_flops_per_token(vocab: int, embedding: int, hidden: int, layers: int) -> float:
    """Multiply-adds x 2 x 3 (forward, and backward at twice its cost) of one token of training."""
    recurrent = sum(4 * hidden * ((embedding if layer == 0 else hidden) + hidden) for layer in range(layers))
    return 6.0 * (recurrent + hidden * vocab)


def measured_tokens_per_second(model_config: dict, batch: int = 32, bptt: int = BPTT, device: str = "cpu") -> float:
    """Tokens per second of one training step (forward, backward, AdamW) of a model of model_config on this
    machine: the faster of two steps after a warm-up one, on random tokens, leaving torch's random state as it was."""
    import torch

    from .capabilities import best_seconds
    from .model import LanguageModel, ModelConfig

    vocab = model_config["vocab_size"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LanguageModel(ModelConfig(**model_config)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ids = torch.randint(0, vocab, (batch, bptt + 1), device=device)

        def step() -> None:
            logits, _ = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize(device)

        return batch * bptt / best_seconds(step, calls=2)


def dropout_for(epochs: float) -> Choice:
    for most, dropout in DROPOUT_BY_EPOCHS:
        if epochs <= most:
            break
    return Choice(dropout, f"about {epochs:.2g} epochs over the corpus")


def vocabulary_for(size_vocab: int, text_bytes: int | None) -> tuple[str, int, str]:
    """(tokenizer type, vocabulary, reason) for a size's vocabulary and a corpus of text_bytes."""
    if text_bytes is not None and text_bytes < CHAR_BELOW:
        return "char", CHAR_VOCABULARY, f"a corpus under {CHAR_BELOW // 1000} KB: one piece per character"
    if text_bytes is not None and size_vocab > text_bytes // MIN_BYTES_PER_PIECE:
        fitting = max(v for v in CHARS_PER_PIECE if v <= max(512, text_bytes // MIN_BYTES_PER_PIECE))
        return "bpe", fitting, f"at most one piece per {MIN_BYTES_PER_PIECE} bytes of corpus"
    return "bpe", size_vocab, "the vocabulary measured best with this model size"


def chars_per_piece(tokenizer_type: str, vocab: int) -> float:
    if tokenizer_type == "char":
        return 1.0
    return CHARS_PER_PIECE.get(vocab) or CHARS_PER_PIECE[min(CHARS_PER_PIECE, key=lambda v: abs(math.log(v / vocab)))]


def choose(given: dict, text_bytes: int | None, seconds: float | None, steps: int | None, device: str = "cpu",
           speed=measured_tokens_per_second) -> dict[str, Choice]:
    """The choices of a new run from scratch for the options not in given (option name -> the value given).

    seconds and steps are the budget (either may be None; the run stops at the first). text_bytes is the
    corpus's size, None when unknown (a stream). speed(model_config, batch, bptt, device) gives tokens per
    second, measured by default; tests pass their own.
    """
    def plan(size: Size) -> tuple[dict, dict, str, float]:
        """(model config, training options, why that vocabulary, tokens read in the budget) of a size."""
        kind, vocab, why = vocabulary_for(size.vocab, text_bytes)
        hidden, projection = given.get("hidden_size", size.hidden), given.get("projection_size", 0)
        shape = {"vocab_size": given.get("vocab_size", vocab), "hidden_size": hidden,
                 "num_layers": given.get("num_layers", size.layers), "projection_size": projection,
                 "embedding_size": given.get("embedding_size", projection or hidden)}
        shape["tie_weights"] = given.get("tie_weights", shape["embedding_size"] == (projection or hidden))
        training = {"tokenizer_type": given.get("tokenizer_type", kind), "batch_size": given.get("batch_size", size.batch),
                    "bptt": given.get("bptt", BPTT)}
        return shape, training, why, tokens_read(shape, training, seconds, steps, device, speed)

    picked, (shape, training, why, read) = SIZES[0], plan(SIZES[0])
    reason = f"reads {read / 1e6:.2g} M tokens in this budget, too few for a larger size"
    for size in SIZES[1:]:  # the largest size whose need the budget meets, and that fits in memory
        try:
            planned = plan(size)
        except ConfigError:
            break
        if planned[3] < size.needs:
            break
        picked, (shape, training, why, read) = size, planned
        reason = f"reads {read / 1e6:.2g} M tokens in this budget, at least the {size.needs / 1e6:.2g} M it needs"
    choices = {
        "hidden_size": Choice(shape["hidden_size"], reason), "num_layers": Choice(shape["num_layers"], reason),
        "embedding_size": Choice(shape["embedding_size"], "as wide as the output layer's input, to share its weights"),
        "tie_weights": Choice(shape["tie_weights"], "one matrix for input and output: fewer weights to learn"),
        "projection_size": Choice(0, "none: the embedding is as wide as the hidden state"),
        "tokenizer_type": Choice(training["tokenizer_type"], why), "vocab_size": Choice(shape["vocab_size"], why),
        "lr": Choice(picked.lr, "the rate measured best for this size"),
        "batch_size": Choice(picked.batch, "more, smaller steps for a short run" if picked.batch < 32 else
                             "the batch measured best for this size"),
    }
    if text_bytes:
        epochs = read * chars_per_piece(training["tokenizer_type"], shape["vocab_size"]) / text_bytes
        choices.update(dict.fromkeys(DROPOUTS, dropout_for(epochs)))
    choices.update(schedule_for(read, training, seconds))
    return {name: choice for name, choice in choices.items() if name not in given}


def choose_fine_tune(model_config: dict, given: dict, text_bytes: int | None, seconds: float | None,
                     steps: int | None, device: str = "cpu", speed=measured_tokens_per_second) -> dict[str, Choice]:
    """The choices of a fine-tune of a model of model_config for the options not in given: warm-up and validations
    from its steps, and dropout raised from the checkpoint's own when the budget makes several epochs."""
    training = {"batch_size": given.get("batch_size", 32), "bptt": given.get("bptt", BPTT)}
    read = tokens_read(model_config, training, seconds, steps, device, speed)
    choices = schedule_for(read, training, seconds)
    if text_bytes:
        dropout = dropout_for(read * chars_per_piece("unigram", model_config["vocab_size"]) / text_bytes)
        for name in DROPOUTS:
            if dropout.value > model_config.get(name, 0.0):
                choices[name] = dropout
    return {name: choice for name, choice in choices.items() if name not in given}


def tokens_read(model_config: dict, training: dict, seconds: float | None, steps: int | None, device: str,
                speed) -> float:
    """Tokens a model of model_config reads in the budget with training's batch_size and bptt: its steps'
    batches, or its measured speed times the seconds (at most the steps' when both are given)."""
    batch, bptt = training["batch_size"], training["bptt"]
    by_steps = steps * batch * bptt if steps else math.inf
    if not seconds:
        return by_steps
    key = (speed, tuple(sorted(model_config.items())), batch, bptt, device)
    if key not in _speeds:
        check_trainable(model_config, batch, bptt, device)
        _speeds[key] = speed(dict(model_config), batch, bptt, device)
    return min(by_steps, _speeds[key] * seconds)


_speeds: dict[tuple, float] = {}  # measured once per process for each shape


def check_trainable(model_config: dict, batch: int, bptt: int, device: str) -> None:
    """ConfigError, in one sentence, for a model that cannot be built or whose training does not fit in memory:
    nothing that would fail is built to be timed."""
    from .memory import check_language_model_training
    from .model import ModelConfig

    check_language_model_training(ModelConfig(**model_config), batch, bptt, device)


def schedule_for(read: float, training: dict, seconds: float | None) -> dict[str, Choice]:
    """Warm-up, validations and epochs for a run that reads read tokens, in batches of training's shape, within
    seconds (None: a budget in steps)."""
    run_steps = max(1, int(read // (training["batch_size"] * training["bptt"])))
    warmup = min(MAX_WARMUP, int(WARMUP_SHARE * run_steps), run_steps - 1)
    validations = min(MAX_VALIDATIONS, max(VALIDATIONS, math.ceil((seconds or 0) / 60 / VALIDATE_MINUTES)))
    why = f"about {validations} validations in the run" + (", one every 2 minutes or less" if validations > VALIDATIONS
                                                           else "")
    return {"warmup_steps": Choice(warmup, f"{WARMUP_SHARE:.0%} of about {run_steps} steps"),
            "eval_every": Choice(max(1, run_steps // validations), why),
            "epochs": Choice(10_000, "the budget ends the run")}


def agreed(world, choose) -> dict[str, Choice]:
    """choose()'s choices, made once by the main process of a distributed run and sent to the others (each
    process would otherwise time the sizes for itself and might choose differently); its error on every rank."""
    if not world.distributed:
        return choose()
    payload = None
    if world.is_main:
        try:
            payload = {"choices": {name: [c.value, c.reason] for name, c in choose().items()}}
        except GenseqError as error:  # every process stops with the main one's sentence
            payload = {"error": str(error)}
    payload = json.loads(world.broadcast_bytes(json.dumps(payload).encode() if world.is_main else None))
    if "error" in payload:
        raise ConfigError(payload["error"])
    return {name: Choice(*value) for name, value in payload["choices"].items()}


def flag(name: str, value) -> str:
    """A choice as the flag that gives it: --layers 2, --tie-weights, --no-tie-weights, --lr 0.005."""
    option = "--" + {"num_layers": "layers"}.get(name, name).replace("_", "-")
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    return f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}"


def describe(choices: dict[str, Choice], file=None) -> None:
    """One short block (on stderr unless file): the choices as flags, those chosen for one reason on one line."""
    if not choices:
        return
    choices = dict(choices)
    if all(name in choices for name in DROPOUTS) and len({choices[name].value for name in DROPOUTS}) == 1:
        choices = {("dropout" if name == DROPOUTS[0] else name): choice for name, choice in choices.items()
                   if name not in DROPOUTS[1:]}
    lines: list[tuple[list[str], str]] = []
    for name, choice in choices.items():
        if lines and lines[-1][1] == choice.reason:
            lines[-1][0].append(flag(name, choice.value))
        else:
            lines.append(([flag(name, choice.value)], choice.reason))
    print("chosen for this budget (give a flag to change one):", file=file or sys.stderr)
    width = max(len(" ".join(flags)) for flags, _ in lines)
    for flags, reason in lines:
        print(f"  {' '.join(flags):<{width}}  {reason}", file=file or sys.stderr)
