"""`genseq train completion` and `genseq eval completion`: train the completion task's language model (checkpoint
kind "lm") into a run directory or resume one, and measure a checkpoint's perplexity and bits per byte.

The trainer is the library's (genseq.train.train_language_model); this module
turns flags into its arguments and checks them before any data is read.
"""

from __future__ import annotations

import argparse
import functools

MODEL_OPTIONS = ("cell", "embedding_size", "hidden_size", "num_layers", "projection_size",
                 "embedding_dropout", "layer_dropout", "output_dropout", "tie_weights")


def add_train_arguments(parser) -> None:
    from genseq.commands import add_tokenizer_flags, fraction, non_negative_int, path, positive_int

    parser.description = ("Train the completion task's language model (an LSTM, GRU or RNN and its tokenizer) into a "
                          "run directory, or continue a run exactly where it stopped.")
    parser.add_argument("--data", required=True, type=path, help="text file, folder, glob, or Hugging Face dataset (name or local path)")
    parser.add_argument("--valid", type=path, help="validation data, same forms as --data (default: the last 5%% of --data)")
    parser.add_argument("--out", type=path, help="run directory to create")
    parser.add_argument("--resume", type=path, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    parser.add_argument("--text-column", default="text", help="column of a dataset holding the text (default: text)")
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

    add_tokenizer_flags(parser.add_argument_group("tokenizer"))
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
    flag("precision", "auto: bf16 mixed precision where this machine runs it faster than fp32 (measured), else fp32; "
         "bf16 is refused where it cannot run", choices=PRECISIONS)


def run_train(args) -> int:
    from genseq import train
    from genseq.commands import build_config, run_directory, saved_training_config, training_outcome
    from genseq.distributed import shutdown

    if args.dropout is not None:
        for name in ("embedding_dropout", "layer_dropout", "output_dropout"):
            if getattr(args, name) is None:
                setattr(args, name, args.dropout)
    model_options = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name) is not None}
    out_dir = run_directory(args.out, args.resume, changes_model=bool(model_options or args.tokenizer))
    saved = saved_training_config(out_dir) if args.resume else None
    config = build_config(train.TrainConfig, args, saved, frozen=("batch_size", "bptt", "seed"),
                          progress=not args.no_progress, **short_run_warmup(args, saved))
    if not args.resume:
        check_new_model(args, model_options, config)
    try:
        trainer = train.train_language_model(
            args.data, out_dir, valid=args.valid, model_options=model_options, train_config=config,
            vocab_size=args.vocab_size, tokenizer_type=args.tokenizer_type, tokenizer_path=args.tokenizer,
            text_column=args.text_column, resume=bool(args.resume), streaming=args.streaming,
        )
    finally:
        shutdown()
    progress = trainer.progress
    return training_outcome("completion", args, out_dir, progress.finished, progress.step,
                            lambda: f"best validation loss {progress.best['loss']:.4f}",
                            data_flags={"text_column": "text", "streaming": False}, is_main=trainer.world.is_main)


def short_run_warmup(args, saved: dict | None) -> dict:
    """A new run of --max-steps N given no --warmup-steps warms up for at most N // 10 steps, so that the
    default never contradicts a short run; a value given is kept and checked."""
    from genseq.train import TrainConfig

    if args.warmup_steps is not None or saved or args.max_steps is None:
        return {}
    return {"warmup_steps": min(TrainConfig.warmup_steps, args.max_steps // 10)}


def check_new_model(args, model_options: dict, config) -> None:
    """Build the model's config and check that its training fits in memory, before any data is read."""
    from genseq.memory import check_language_model_training
    from genseq.model import ModelConfig
    from genseq.tokenizer import Tokenizer
    from genseq.train import resolve_device

    vocab_size = Tokenizer.load(args.tokenizer).vocab_size if args.tokenizer else args.vocab_size
    model_config = ModelConfig(**{**model_options, "vocab_size": vocab_size})
    check_language_model_training(model_config, config.batch_size, config.bptt, resolve_device(config.device))


def add_eval_arguments(parser) -> None:
    from genseq.commands import add_device_flag, path

    parser.description = "Perplexity (per token and per word) and bits per byte of a language model on a text."
    parser.add_argument("--model", type=path, help="checkpoint directory or Hugging Face Hub id (default: the embedded model)")
    parser.add_argument("--data", required=True, type=path, help="text file, folder, glob or dataset")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    parser.add_argument("--exact", action="store_true",
                        help="score the text as one stream with the state carried throughout (slower; the default "
                             "scores documents and pieces of them side by side, within 0.5%% of it in NLL)")
    add_device_flag(parser)


def run_eval(args) -> dict:
    """Perplexity and bits per byte; the progress bars go to stderr, and not at all when the metrics go out as JSON."""
    from genseq import default_model_dir
    from genseq.checkpoint import from_pretrained
    from genseq.data import open_source, tokenize
    from genseq.evaluate import evaluate
    from genseq.train import resolve_device

    model, tokenizer = from_pretrained(args.model or default_model_dir(), device=resolve_device(args.device))
    progress = not getattr(args, "json", False)
    stream = tokenize(open_source(args.data, args.text_column, split=args.split), tokenizer, progress=progress)
    return evaluate(model, stream, progress=progress, exact=args.exact, eos_id=tokenizer.eos_id)
