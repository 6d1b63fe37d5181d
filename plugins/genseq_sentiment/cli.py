"""`genseq train sentiment` and `genseq eval sentiment`."""

from __future__ import annotations

import sys


def add_train_arguments(parser) -> None:
    from genseq.cli import non_negative_float, positive_int

    parser.add_argument("--data", required=True, help="training data: a csv/json file or dataset with text and label (0/1)")
    parser.add_argument("--valid", required=True, help="validation data, same form")
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--vocab-size", type=positive_int, default=5000, help="SentencePiece vocabulary (5000)")
    parser.add_argument("--tokenizer", metavar="FILE", help="reuse this tokenizer.model")
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--embedding-size", type=positive_int, help="(32)")
    parser.add_argument("--hidden-size", type=positive_int, help="(100)")
    parser.add_argument("--layers", dest="num_layers", type=positive_int, help="(1)")
    parser.add_argument("--dropout", type=float, help="(0)")
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip-grad-norm", type=non_negative_float, default=0.0, help="0 (default): no clipping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")


def run_train(args) -> int:
    from .train import SentimentTrainConfig, train_sentiment

    config = SentimentTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  clip_grad_norm=args.clip_grad_norm, seed=args.seed, device=args.device,
                                  progress=not args.no_progress)
    options = {name: getattr(args, name) for name in ("cell", "embedding_size", "hidden_size", "num_layers", "dropout")
               if getattr(args, name) is not None}
    trainer = train_sentiment(args.data, args.valid, args.out, config, options, vocab_size=args.vocab_size,
                              tokenizer_path=args.tokenizer, text_column=args.text_column, label_column=args.label_column)
    best = dict(zip(("f1", "loss"), (trainer.best[0], -trainer.best[1])))
    if not trainer.finished:
        print(f"genseq: stopped at step {trainer.step}; the best model so far is in {args.out}", file=sys.stderr)
        return 130
    print(f"trained {trainer.step} steps; best validation F1 {best['f1']:.4f}; model in {args.out}", file=sys.stderr)
    return 0


def add_eval_arguments(parser) -> None:
    parser.add_argument("--model", help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--data", required=True, help="labelled data: a csv/json file or dataset")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    parser.add_argument("--baselines", metavar="TRAIN_DATA",
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
