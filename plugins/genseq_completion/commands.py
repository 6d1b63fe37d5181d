"""`genseq train completion` and `genseq eval completion`: train the completion task's language model (checkpoint
kind "lm") into a run directory, fine-tune one (--init) or resume one, and measure a checkpoint's perplexity and
bits per byte.

The trainer is the library's (genseq.train.train_language_model); this module
turns flags into its arguments and checks them before any data is read.
"""

from __future__ import annotations

import argparse
import functools

MODEL_OPTIONS = ("cell", "embedding_size", "hidden_size", "num_layers", "projection_size",
                 "embedding_dropout", "layer_dropout", "output_dropout", "tie_weights")
DROPOUTS = ("embedding_dropout", "layer_dropout", "output_dropout")  # the model options a fine-tune may change


def add_train_arguments(parser) -> None:
    from genseq.commands import add_tokenizer_flags, defer_tokenizer_defaults, fraction, non_negative_int, path, positive_int
    from genseq.data import LABEL_SOURCES

    parser.description = ("Train the completion task's language model (an LSTM, GRU or RNN and its tokenizer) into a "
                          "run directory, or continue a run exactly where it stopped. Given a budget (--max-time or "
                          "--max-steps), the model, tokenizer and optimisation options left out are chosen for it, the "
                          "corpus size and this machine's measured speed, and printed; the defaults shown below hold "
                          "without a budget or with --fixed-defaults.")
    parser.add_argument("--data", required=True, type=path, help="text file, folder, glob, or Hugging Face dataset (name or local path)")
    parser.add_argument("--valid", type=path, help="validation data, same forms as --data (default: the last 5%% of --data)")
    parser.add_argument("--out", type=path, help="run directory to create")
    parser.add_argument("--resume", type=path, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    parser.add_argument("--init", type=path, metavar="DIR",
                        help="fine-tune this checkpoint (a directory, hub id, or 'default' for the embedded model): its "
                             "tokenizer, architecture and weights, with fine-tuning defaults (printed)")
    parser.add_argument("--text-column", default="text", help="column of a dataset holding the text (default: text)")
    parser.add_argument("--labels-from", choices=LABEL_SOURCES,
                        help="style labels from folders: each file's label is its first folder below --data's fixed part "
                             "(DIR/LABEL/*.txt; 'text/*/train' labels text/austen/train/* austen)")
    parser.add_argument("--label-column", help="style labels from this column of a dataset")
    parser.add_argument("--streaming", action="store_true",
                        help="read --data lazily as training goes, with no tokenisation pass first (needs --valid and "
                             "--max-steps or --max-time)")

    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=["lstm", "gru", "rnn"])
    model.add_argument("--embedding-size", type=positive_int)
    model.add_argument("--hidden-size", type=positive_int)
    model.add_argument("--layers", dest="num_layers", type=positive_int)
    model.add_argument("--projection-size", type=non_negative_int, help="linear layer between the core and the output (0: none)")
    model.add_argument("--dropout", type=fraction, help="sets the three dropouts below at once")
    model.add_argument("--embedding-dropout", type=fraction)
    model.add_argument("--layer-dropout", type=fraction)
    model.add_argument("--output-dropout", type=fraction)
    model.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None)

    parser.add_argument("--fixed-defaults", action="store_true",
                        help="options left out keep the defaults shown here, instead of being chosen for the "
                             "budget (--max-time or --max-steps), the corpus and this machine (printed when chosen)")
    add_tokenizer_flags(parser.add_argument_group("tokenizer"))
    defer_tokenizer_defaults(parser)
    add_training_flags(parser.add_argument_group("training (left out when resuming: the run's own values)"))


def add_training_flags(training) -> None:
    from genseq.commands import add_run_flags, config_flag, non_negative_float, non_negative_int, positive_int
    from genseq.train import PRECISIONS, SCHEDULES, TrainConfig

    add_run_flags(training, TrainConfig, helps={
        "lr": "AdamW's learning rate", "max_time": "wall-clock budget (300, 15m, 2h); the schedule follows it"})
    flag = functools.partial(config_flag, training, TrainConfig)
    flag("bptt", "tokens per truncated-BPTT window", type=positive_int)
    flag("weight_decay", type=non_negative_float)
    flag("schedule", choices=SCHEDULES)
    flag("warmup_steps", type=non_negative_int, default_text=f"{TrainConfig.warmup_steps}, at most a tenth of --max-steps")
    flag("style_rows", "rows added to each batch that read a style label as a prompt does: from a fresh state, the "
         "label, then text from a random place in one of its documents; they teach the label to steer a "
         "continuation (needs --labels-from or --label-column)", type=non_negative_int,
         default_text="half of --batch-size with style labels, else 0")
    flag("precision", "auto: bf16 mixed precision where this machine runs it faster than fp32 (measured), else fp32; "
         "bf16 is refused where it cannot run", choices=PRECISIONS)


def run_train(args) -> int:
    from genseq import train
    from genseq.commands import build_config, given_tokenizer_flags, run_directory, saved_training_config, training_outcome
    from genseq.distributed import shutdown

    if args.dropout is not None:
        for name in DROPOUTS:
            if getattr(args, name) is None:
                setattr(args, name, args.dropout)
    model_options = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name) is not None}
    tokenizer_options = given_tokenizer_flags(args)
    if args.init:
        check_fine_tuning(args, model_options, tokenizer_options)
    out_dir = run_directory(args.out, args.resume, changes_model=bool(model_options or tokenizer_options))
    saved = saved_training_config(out_dir) if args.resume else None
    if args.init:
        fine_tuning_defaults(args)
    chosen = {} if args.resume else budget_defaults(args, model_options, tokenizer_options)
    if not args.resume:
        style_rows_default(args)
    config = build_config(train.TrainConfig, args, saved, frozen=("batch_size", "bptt", "seed"),
                          progress=not args.no_progress, **short_run_warmup(args, saved), **chosen)
    if not args.resume:
        check_new_model(args, model_options, config)
    try:
        trainer = train.train_language_model(
            args.data, out_dir, valid=args.valid, model_options=model_options, train_config=config,
            vocab_size=args.vocab_size, tokenizer_type=args.tokenizer_type, tokenizer_path=args.tokenizer,
            text_column=args.text_column, resume=bool(args.resume), streaming=args.streaming, init=args.init,
            labels_from=args.labels_from, label_column=args.label_column,
        )
    finally:
        shutdown()
    progress = trainer.progress
    return training_outcome("completion", args, out_dir, progress.finished, progress.step,
                            lambda: f"best validation loss {progress.best['loss']:.4f}",
                            data_flags={"text_column": "text", "streaming": False, "labels_from": None,
                                        "label_column": None},
                            is_main=trainer.world.is_main)


def style_rows_default(args) -> None:
    """A new run on a labelled corpus given no --style-rows gets half its batch, and says so on stderr: without
    such rows a label is never the only clue to what follows in training, and a prompt's label barely steers."""
    import sys

    from genseq.train import TrainConfig

    if args.style_rows is not None or not (args.labels_from or args.label_column) or args.streaming:
        return
    args.style_rows = (args.batch_size or TrainConfig.batch_size) // 2
    print(f"style labels: --style-rows {args.style_rows} (half the batch) read each label as a prompt does, so that it "
          "steers a continuation; --style-rows 0 leaves them out", file=sys.stderr)


def check_fine_tuning(args, model_options: dict, tokenizer_options: list[str]) -> None:
    """Refuse what a fine-tune cannot do: resume (a run continues from its own checkpoint), or change the
    architecture or tokenizer of the checkpoint it starts from."""
    from genseq.errors import ConfigError

    if args.resume:
        raise ConfigError("--init starts a new fine-tune and --resume continues a run from its own checkpoint; drop --init")
    fixed = [name for name in model_options if name not in DROPOUTS] + tokenizer_options
    if fixed:
        flags = ", ".join("--" + ("layers" if name == "num_layers" else name.replace("_", "-")) for name in fixed)
        raise ConfigError(f"{flags} would change the architecture or tokenizer of --init {args.init}, which a fine-tune "
                          "keeps; drop them, or train a new model without --init")


def fine_tuning_defaults(args) -> None:
    """Give a new fine-tune's flags left out train.FINE_TUNING's values (the budget only when neither
    --max-steps nor --max-time is given), and say on stderr which ones it took."""
    import sys

    from genseq.train import FINE_TUNING, FINE_TUNING_FIXED

    defaults = {**FINE_TUNING, **(FINE_TUNING_FIXED if args.fixed_defaults else {})}
    if args.max_steps is not None:
        del defaults["max_time"]
        if args.fixed_defaults:
            defaults["warmup_steps"] = min(defaults["warmup_steps"], args.max_steps // 10)
    taken = {name: value for name, value in defaults.items() if getattr(args, name) is None}
    for name, value in taken.items():
        setattr(args, name, value)
    if taken:
        shown = ", ".join(f"--{name.replace('_', '-')} {value:g}" for name, value in taken.items())
        print(f"fine-tuning {args.init} with {shown} (give a flag to change one)", file=sys.stderr)


BUDGET_TRAINING = ("lr", "warmup_steps", "eval_every", "epochs", "batch_size", "bptt")  # the rule reads or sets these


def budget_defaults(args, model_options: dict, tokenizer_options: list[str]) -> dict:
    """Fill the options a new run with a budget left out from genseq.budget's rule; {"budget_rule": the choices}
    for the run's config (the trainer prints them as training starts), {} without a budget.

    A run from scratch gets its model, tokenizer and optimisation; a fine-tune (--init), whose model and tokenizer
    are its checkpoint's, gets dropout from its epochs and warm-up and validation from its steps."""
    from torch import device as torch_device

    from genseq import budget
    from genseq.data import open_source
    from genseq.distributed import world

    if args.fixed_defaults or (args.max_time is None and args.max_steps is None):
        return {}
    given = {**model_options, **{name: getattr(args, name) for name in tokenizer_options},
             **{name: getattr(args, name) for name in BUDGET_TRAINING if getattr(args, name) is not None}}
    if args.tokenizer:
        from genseq.tokenizer import Tokenizer

        given["vocab_size"] = Tokenizer.load(args.tokenizer).vocab_size
    def choose():
        text_bytes = None if args.streaming else budget.corpus_bytes(open_source(args.data, args.text_column))
        if args.init:
            return budget.choose_fine_tune(init_model_config(args.init), given, text_bytes, args.max_time,
                                           args.max_steps, device)
        return budget.choose(given, text_bytes, args.max_time, args.max_steps, device)

    device = train_device(args)
    choices = budget.agreed(world(torch_device(device)), choose)
    for name, choice in choices.items():
        if name in MODEL_OPTIONS:
            model_options[name] = choice.value
        else:
            setattr(args, name, choice.value)
    return {"budget_rule": {name: {"value": c.value, "reason": c.reason} for name, c in choices.items()}}


def train_device(args) -> str:
    from genseq.train import resolve_device

    return str(resolve_device(args.device or "auto"))


def short_run_warmup(args, saved: dict | None) -> dict:
    """A new run of --max-steps N given no --warmup-steps warms up for at most N // 10 steps, so that the
    default never contradicts a short run; a value given is kept and checked."""
    from genseq.train import TrainConfig

    if args.warmup_steps is not None or saved or args.max_steps is None:
        return {}
    return {"warmup_steps": min(TrainConfig.warmup_steps, args.max_steps // 10)}


def check_new_model(args, model_options: dict, config) -> None:
    """Build the model's config (a fine-tune's: its checkpoint's, with any dropouts given) and check that its
    training fits in memory, before any data is read."""
    from genseq.memory import check_language_model_training
    from genseq.model import ModelConfig
    from genseq.tokenizer import Tokenizer
    from genseq.train import resolve_device

    if args.init:
        model_config = ModelConfig(**{**init_model_config(args.init), **model_options})
    else:
        vocab_size = Tokenizer.load(args.tokenizer).vocab_size if args.tokenizer else args.vocab_size
        model_config = ModelConfig(**{**model_options, "vocab_size": vocab_size})
    check_language_model_training(model_config, config.batch_size + config.style_rows, config.bptt,
                                  resolve_device(config.device))


def init_model_config(init: str) -> dict:
    """The model_config of the checkpoint --init names, checked as a load checks it."""
    from genseq import default_model_dir
    from genseq.checkpoint import CONFIG_FILE, WEIGHTS_FILE, model_config_from, read_config, read_header, resolve
    from genseq.model import ModelConfig

    directory = default_model_dir() if init == "default" else resolve(init)
    values = read_config(directory).get("model_config")
    return model_config_from(ModelConfig, values, directory / CONFIG_FILE, read_header(directory / WEIGHTS_FILE)).to_dict()


def add_eval_arguments(parser) -> None:
    from genseq.commands import add_device_flag, path

    parser.description = "Perplexity (per token and per word) and bits per byte of a language model on a text."
    parser.add_argument("--model", type=path, help="checkpoint directory or Hugging Face Hub id (default: the embedded model)")
    parser.add_argument("--data", required=True, type=path, help="text file, folder, glob or dataset")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    parser.add_argument("--style", help="score the text as written in this style: each document starts with the "
                                        "label's control token, once, as a prompt in the style does (the model's "
                                        "labels: genseq tasks --json)")
    parser.add_argument("--exact", action="store_true",
                        help="score the text as one stream with the state carried throughout (slower; the default "
                             "scores documents and pieces of them side by side, within 0.5%% of it in NLL)")
    parser.add_argument("--passages", type=int, metavar="TOKENS",
                        help="score the text in passages of this many tokens, each read from a fresh start as a "
                             "prompt is ([EOS], then the --style label), never after the text before it: what the "
                             "model predicts from the label alone")
    parser.add_argument("--precision", default="fp32",
                        help="of the matrix products, fp32 or int8 (default: fp32); int8 scores an LSTM model "
                             "faster on a CPU, its NLL about 0.1%% higher")
    add_device_flag(parser)


def run_eval(args) -> dict:
    """Perplexity and bits per byte; the progress bars go to stderr, and not at all when the metrics go out as JSON."""
    from genseq import default_model_dir
    from genseq.checkpoint import from_pretrained
    from genseq.data import open_source, tokenize
    from genseq.errors import ConfigError
    from genseq.evaluate import evaluate
    from genseq.train import resolve_device

    if args.passages is not None and args.passages < 1:
        raise ConfigError(f"--passages must be a number of tokens >= 1, not {args.passages}")
    if args.passages and args.exact:
        raise ConfigError("--exact carries the state through the whole text and --passages reads each passage from "
                          "a fresh start; give one of them")
    model, tokenizer = from_pretrained(args.model or default_model_dir(), device=resolve_device(args.device))
    progress = not getattr(args, "json", False)
    source = open_source(args.data, args.text_column, split=args.split)
    if args.passages:  # the label goes before every passage, not into the text
        prefix = (tokenizer.eos_id, *tokenizer.style_prefix(args.style))
        stream = tokenize(source, tokenizer, progress=progress)
    else:
        prefix, stream = (), tokenize(source, tokenizer, progress=progress, style=args.style, label_repeats=False)
    return evaluate(model, stream, progress=progress, exact=args.exact, eos_id=tokenizer.eos_id,
                    unscored=tuple(tokenizer.styles.values()), precision=args.precision, passage=args.passages,
                    prefix=prefix)
