"""`genseq train wordgen` and `genseq eval wordgen`: the task's commands module (its `commands = ".commands"`).

genseq imports this module only to build those two commands, never when it
lists or runs the task. The flag types and helpers come from genseq.commands,
so mistakes read like genseq's own: one sentence, exit code 2.
"""

from __future__ import annotations

import functools

TOKENIZER_PIECES = 400  # at most: one piece per character of the corpus, 256 byte pieces and 4 special ids


def add_train_arguments(parser) -> None:
    from genseq.commands import config_flag, device, duration, path, positive_float, positive_int, seed

    from .train import WordTrainConfig

    parser.add_argument("--data", required=True, type=path, help="training text: a .txt file or a directory of them")
    parser.add_argument("--valid", required=True, type=path, help="validation text, the same way")
    parser.add_argument("--out", type=path, help="run directory to create")
    parser.add_argument("--resume", type=path, metavar="DIR",
                        help="continue the interrupted run in DIR (from its last/)")
    parser.add_argument("--embedding-size", type=positive_int, help="(16)")
    parser.add_argument("--hidden-size", type=positive_int, help="(32)")
    training = parser.add_argument_group("training (left out when resuming: the run's own values)")
    flag = functools.partial(config_flag, training, WordTrainConfig)
    flag("epochs", type=positive_int)
    flag("batch_size", type=positive_int)
    flag("lr", "Adam's learning rate", type=positive_float)
    flag("max_steps", type=positive_int)
    flag("max_time", "seconds of training: 300, 15m, 2h", type=duration)
    flag("seed", type=seed)
    flag("device", "auto, cpu, cuda or cuda:N", type=device)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args) -> int:
    from pathlib import Path

    from genseq.checkpoint import build_saved
    from genseq.commands import build_config, run_directory, saved_training_config, training_outcome
    from genseq.runs import LAST_DIR
    from genseq.tokenizer import Tokenizer

    from .model import WORD_MODEL, WordModel, WordModelConfig
    from .train import WordTrainConfig, WordTrainer, read_words

    sizes = {name: getattr(args, name) for name in ("embedding_size", "hidden_size") if getattr(args, name) is not None}
    out_dir = run_directory(args.out, args.resume, changes_model=bool(sizes))
    saved = saved_training_config(out_dir) if args.resume else None
    config = build_config(WordTrainConfig, args, saved, frozen=("batch_size", "seed"), progress=not args.no_progress)
    train_words, valid_words = read_words(args.data), read_words(args.valid)
    if args.resume:
        model, tokenizer = build_saved(Path(out_dir) / LAST_DIR, WORD_MODEL)
    else:
        tokenizer = Tokenizer.train(iter(train_words), vocab_size=TOKENIZER_PIECES, model_type="char")
        model = WordModel(WordModelConfig(vocab_size=tokenizer.vocab_size, **sizes))
    trainer = WordTrainer(model, tokenizer, train_words, valid_words, config, out_dir)
    if args.resume:
        trainer.resume()
    progress = trainer.fit()
    return training_outcome("wordgen", args, out_dir, progress.finished, progress.step,
                            lambda: f"best validation loss {progress.best['loss']:.4f}")


def add_eval_arguments(parser) -> None:
    from genseq.commands import path

    parser.add_argument("--model", type=path, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--data", required=True, type=path, help="text to score: a .txt file or a directory of them")


def run_eval(args) -> dict:
    import math

    from .model import batches, load_word_model, mean_loss, word_ids
    from .train import BATCH_OF_WORDS, read_words

    model, tokenizer = load_word_model(args.model)
    rows = word_ids(tokenizer, read_words(args.data))
    loss = mean_loss(model, batches(rows, BATCH_OF_WORDS))
    return {"words": len(rows), "loss": loss, "perplexity": math.exp(loss)}
