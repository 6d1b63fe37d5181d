"""`genseq train sentiment` and `genseq eval sentiment`."""

from __future__ import annotations


def add_train_arguments(parser) -> None:
    from genseq.commands import add_run_flags, add_tokenizer_flags, config_flag, fraction, path, positive_int

    from .train import SentimentTrainConfig

    parser.add_argument("--data", required=True, type=path, help="training data: a csv/json file or dataset with text and label (0/1)")
    parser.add_argument("--valid", required=True, type=path, help="validation data, same form")
    parser.add_argument("--out", type=path, help="run directory to create")
    parser.add_argument("--resume", type=path, metavar="DIR", help="continue the interrupted run in DIR (from its last/)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    add_tokenizer_flags(parser, vocab_size=5000)
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--embedding-size", type=positive_int, help="(32)")
    parser.add_argument("--hidden-size", type=positive_int, help="(100)")
    parser.add_argument("--layers", dest="num_layers", type=positive_int, help="(1)")
    parser.add_argument("--dropout", type=fraction, help="(0)")

    training = parser.add_argument_group("training (left out when resuming: the run's own values)")
    add_run_flags(training, SentimentTrainConfig, helps={
        "lr": "Adam's learning rate", "patience": "validations without a better F1 before stopping; 0 never stops"})
    config_flag(training, SentimentTrainConfig, "max_tokens", "longer texts are cut for training", type=positive_int)


def run_train(args) -> int:
    from genseq.commands import build_config, run_directory, saved_training_config, training_outcome

    from .train import SentimentTrainConfig, train_sentiment

    options = {name: getattr(args, name) for name in ("cell", "embedding_size", "hidden_size", "num_layers", "dropout")
               if getattr(args, name) is not None}
    out_dir = run_directory(args.out, args.resume, changes_model=bool(options or args.tokenizer))
    saved = saved_training_config(out_dir) if args.resume else None
    config = build_config(SentimentTrainConfig, args, saved, frozen=("batch_size", "seed"), progress=not args.no_progress)
    if not args.resume:
        check_new_model(args, options, config)
    trainer = train_sentiment(args.data, args.valid, out_dir, config, options, vocab_size=args.vocab_size,
                              tokenizer_type=args.tokenizer_type, tokenizer_path=args.tokenizer,
                              text_column=args.text_column, label_column=args.label_column, resume=bool(args.resume))
    progress = trainer.progress
    return training_outcome("sentiment", args, out_dir, progress.finished, progress.step,
                            lambda: f"best validation F1 {progress.best['f1']:.4f}",
                            data_flags={"text_column": "text", "label_column": "label"})


def check_new_model(args, options: dict, config) -> None:
    """Build the model's config and check that its training fits in memory, before any data is read."""
    from genseq.memory import FLOAT_BYTES, TRAINING_COPIES, check_fits, recurrent_activations, recurrent_parameters
    from genseq.tokenizer import Tokenizer
    from genseq.runs import resolve_device

    from .model import SentimentConfig

    vocab_size = Tokenizer.load(args.tokenizer).vocab_size if args.tokenizer else args.vocab_size
    model = SentimentConfig(**{**options, "vocab_size": vocab_size})
    parameters = (model.vocab_size * model.embedding_size + model.hidden_size + 1
                  + recurrent_parameters(model.cell, model.embedding_size, model.hidden_size, model.num_layers))
    activations = config.batch_size * config.max_tokens * model.embedding_size + recurrent_activations(
        model.cell, config.batch_size, config.max_tokens, model.hidden_size, model.num_layers)
    check_fits(FLOAT_BYTES * (TRAINING_COPIES * parameters + activations),
               f"training a {model.num_layers} x {model.hidden_size} {model.cell} with embedding size "
               f"{model.embedding_size} on batches of {config.batch_size} texts of {config.max_tokens} tokens",
               "use smaller --hidden-size, --embedding-size, --layers, --vocab-size, --batch-size or --max-tokens",
               resolve_device(config.device))


def add_eval_arguments(parser) -> None:
    from genseq.commands import path

    parser.add_argument("--model", type=path, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--data", required=True, type=path, help="labelled data: a csv/json file or dataset")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    parser.add_argument("--baselines", type=path, metavar="TRAIN_DATA",
                        help="also score the majority-class and bag-of-words baselines, fitted on this training data")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")


def run_eval(args) -> dict:
    from .model import load_sentiment
    from .train import bag_of_words_baseline, evaluate_model, load_examples, majority_baseline

    data = load_examples(args.data, args.text_column, args.label_column, args.split)
    metrics = {"model": evaluate_model(load_sentiment(args.model), data)}
    if args.baselines:
        train = load_examples(args.baselines, args.text_column, args.label_column, "train")
        metrics["majority_class"] = majority_baseline(train, data)
        metrics["bag_of_words_logistic_regression"] = bag_of_words_baseline(train, data)
    return metrics
