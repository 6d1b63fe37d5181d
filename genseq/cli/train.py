"""`genseq train lm`: train a language model into a run directory, or resume one."""

from __future__ import annotations

import argparse
import functools

from . import (
    build_config, config_flag, device, duration, fraction, non_negative_float, non_negative_int, path, positive_float,
    positive_int, run_directory, saved_training_config, seed, training_outcome,
)

MODEL_OPTIONS = ("cell", "embedding_size", "hidden_size", "num_layers", "projection_size",
                 "embedding_dropout", "layer_dropout", "output_dropout", "tie_weights")


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model", description="Train a model: lm, or a task that can be trained.")
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK")
    add_lm_parser(tasks)
    add_task_parsers(tasks, "trainable", "add_train_arguments", lambda task_class, args: task_class.train(args))


def add_task_parsers(tasks, able: str, add_arguments: str, action) -> list:
    """One sub-command per discovered task that implements it (training or evaluation); returns the parsers.

    action(task_class, args) runs the command; an exception inside the plugin
    becomes one error naming it.
    """
    import warnings

    from ..plugins import PluginError, discover, run_guarded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `genseq tasks` reports duplicates; parsing stays quiet
        infos = [info for info in discover() if info.ok]
    parsers = []
    for info in infos:
        task_class = info.task_class
        try:
            if not getattr(task_class, able)():
                continue
            parser = argparse.ArgumentParser(prog=info.name, description=task_class.description)
            getattr(task_class, add_arguments)(parser)
        except Exception as error:  # a broken plugin gets a command that says so; every other command still works
            failure = PluginError(f"task {info.name} ({info.distribution}) failed: {type(error).__name__}: {error}")
            parser = tasks.add_parser(info.name, help=f"(failed: {error})", add_help=False, prefix_chars="\0")
            parser.add_argument("rest", nargs=argparse.REMAINDER)  # no flags (prefix_chars): it takes them all
            parser.set_defaults(run=lambda args, failure=failure: _raise(failure))
            continue
        parser = tasks.add_parser(info.name, help=task_class.description, description=task_class.description,
                                  parents=[parser], add_help=False)

        def run_task(args, task_class=task_class, info=info):
            return run_guarded(info.name, info.distribution, action, task_class, args)

        parser.set_defaults(run=run_task)
        parsers.append(parser)
    return parsers


def _raise(error: Exception):
    raise error


def add_lm_parser(tasks) -> None:
    from ..train import PRECISIONS, SCHEDULES, TrainConfig

    parser = tasks.add_parser("lm", help="a language model", description="Train a language model.")
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

    tokenizer = parser.add_argument_group("tokenizer")
    tokenizer.add_argument("--vocab-size", type=positive_int, default=8000)
    tokenizer.add_argument("--tokenizer-type", choices=["unigram", "bpe"], default="unigram")
    tokenizer.add_argument("--tokenizer", type=path, metavar="FILE", help="reuse this tokenizer.model instead of training one")

    training = parser.add_argument_group("training (left out when resuming: the run's own values)")
    flag = functools.partial(config_flag, training, TrainConfig)
    flag("batch_size", type=positive_int)
    flag("bptt", "tokens per truncated-BPTT window", type=positive_int)
    flag("lr", "AdamW's learning rate", type=positive_float)
    flag("weight_decay", type=non_negative_float)
    flag("schedule", choices=SCHEDULES)
    flag("warmup_steps", type=non_negative_int, default_text=f"{TrainConfig.warmup_steps}, at most a tenth of --max-steps")
    flag("epochs", type=positive_int)
    flag("max_steps", type=positive_int, default_text="none")
    flag("max_time", "wall-clock budget (300, 15m, 2h); the schedule follows it", type=duration, default_text="none")
    flag("clip_grad_norm", "0 turns clipping off", type=non_negative_float)
    flag("patience", "validations without improvement before stopping; 0 never stops", type=non_negative_int)
    flag("eval_every", "steps between validations", type=positive_int, default_text="each epoch")
    flag("checkpoint_every", "steps between resumable checkpoints", type=positive_int, default_text="none")
    flag("checkpoint_minutes", "minutes between resumable checkpoints", type=non_negative_float)
    flag("seed", type=seed)
    flag("device", "auto, cpu, cuda or cuda:N", type=device)
    flag("precision", "auto: bf16 mixed precision where this machine runs it faster than fp32 (measured), else fp32; "
         "bf16 is refused where it cannot run", choices=PRECISIONS)
    training.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..distributed import shutdown
    from ..train import TrainConfig, train_language_model

    if args.dropout is not None:
        for name in ("embedding_dropout", "layer_dropout", "output_dropout"):
            if getattr(args, name) is None:
                setattr(args, name, args.dropout)
    model_options = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name) is not None}
    out_dir = run_directory(args.out, args.resume, changes_model=bool(model_options or args.tokenizer))
    saved = saved_training_config(out_dir) if args.resume else None
    config = build_config(TrainConfig, args, saved, frozen=("batch_size", "bptt", "seed"), progress=not args.no_progress,
                          **short_run_warmup(args, saved))
    if not args.resume:
        check_new_model(args, model_options, config)
    try:
        trainer = train_language_model(
            args.data, out_dir, valid=args.valid, model_options=model_options, train_config=config,
            vocab_size=args.vocab_size, tokenizer_type=args.tokenizer_type, tokenizer_path=args.tokenizer,
            text_column=args.text_column, resume=bool(args.resume), streaming=args.streaming,
        )
    finally:
        shutdown()
    progress = trainer.progress
    return training_outcome("lm", args, out_dir, progress.finished, progress.step,
                            lambda: f"best validation loss {progress.best_valid_loss:.4f}",
                            data_flags={"text_column": "text", "streaming": False}, is_main=trainer.world.is_main)


def short_run_warmup(args, saved: dict | None) -> dict:
    """A new run of --max-steps N given no --warmup-steps warms up for at most N // 10 steps, so that the
    default never contradicts a short run; a value given is kept and checked."""
    from ..train import TrainConfig

    if args.warmup_steps is not None or saved or args.max_steps is None:
        return {}
    return {"warmup_steps": min(TrainConfig.warmup_steps, args.max_steps // 10)}


def check_new_model(args, model_options: dict, config) -> None:
    """Build the model's config and check that its training fits in memory, before any data is read."""
    from ..memory import check_language_model_training
    from ..model import ModelConfig
    from ..tokenizer import Tokenizer
    from ..train import resolve_device

    vocab_size = Tokenizer.load(args.tokenizer).vocab_size if args.tokenizer else args.vocab_size
    model_config = ModelConfig(**{**model_options, "vocab_size": vocab_size})
    check_language_model_training(model_config, config.batch_size, config.bptt, resolve_device(config.device))
