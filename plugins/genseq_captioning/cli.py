"""The flags of `genseq train captioning` and `genseq eval captioning`, and the two commands; they parse and call the library."""

from __future__ import annotations

import argparse
import functools
import re

from genseq.commands import (
    add_device_flag, add_run_flags, add_tokenizer_flags, build_config, config_flag, defer_tokenizer_defaults, fraction,
    given_tokenizer_flags, non_negative_float, non_negative_int, path, positive_float, positive_int, run_directory,
    saved_training_config, training_outcome,
)


def _add_data_arguments(parser, split: str) -> None:
    parser.add_argument("--data", required=True, type=path, help="imagefolder with metadata.jsonl/csv, saved dataset, csv/json/parquet "
                        "file, Hugging Face dataset name, or a folder with Karpathy's dataset_*.json and its images")
    parser.add_argument("--split", default=split, help=f"split of --data (default: {split}; a one-split dataset is used whole)")
    parser.add_argument("--image-column", help="column holding the images (default: the first image column)")
    parser.add_argument("--caption-column", dest="caption_columns", action="append",
                        help="column holding captions, a string or a list; repeat for several (default: text, caption, "
                             "captions, ... or caption_0, caption_1, ...)")


# ---- genseq train captioning ------------------------------------------------------------
def add_train_arguments(parser) -> None:
    from .train import CaptionTrainConfig

    _add_data_arguments(parser, "train")
    parser.add_argument("--valid", type=path, help="validation data, same forms as --data (default: the validation split of --data, "
                        "else 5%% of its images)")
    parser.add_argument("--valid-split", default="validation")
    parser.add_argument("--out", type=path, help="run directory to create")
    parser.add_argument("--resume", type=path, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    parser.add_argument("--init", type=path, metavar="DIR",
                        help="start from this captioner (a directory, hub id, or 'default' for the shipped one): its "
                             "tokenizer, encoder, decoder and weights")

    encoder = parser.add_argument_group("encoder")
    encoder.add_argument("--encoder", help="efficientnet_lite0 (default) or a torchvision model: resnet18, resnet50, "
                         "mobilenet_v3_large, efficientnet_b0, ...")
    encoder.add_argument("--encoder-weights", default="auto",
                         help="auto (default), default (the shipped captioner's EfficientNet-Lite0), imagenet "
                              "(torchvision's download), none (random), or a .pth/.safetensors file")
    encoder.add_argument("--image-size", type=positive_int, help="side of the square the images are letterboxed to (default 224)")
    encoder.add_argument("--trainable-stages", type=non_negative_int, help="fine-tune the encoder's last N stages (default 0: frozen)")

    decoder = parser.add_argument_group("decoder")
    decoder.add_argument("--attention", action=argparse.BooleanOptionalAction, default=None,
                         help="soft attention (Show, Attend and Tell; default) or none (Show and Tell)")
    for name in ("feature_size", "embedding_size", "hidden_size", "attention_size"):
        decoder.add_argument("--" + name.replace("_", "-"), type=positive_int)
    decoder.add_argument("--dropout", type=fraction)
    add_tokenizer_flags(decoder, vocab_size=1000)
    defer_tokenizer_defaults(parser)

    training = parser.add_argument_group("training (left out when resuming: the run's own values)")
    add_run_flags(training, CaptionTrainConfig, helps={
        "patience": "validations without a better BLEU-4 before stopping; 0 never stops",
        "max_time": "wall-clock budget (300, 15m, 2h); the schedule follows it"})
    flag = functools.partial(config_flag, training, CaptionTrainConfig)
    flag("encoder_lr", "for fine-tuned encoder stages", type=positive_float)
    flag("weight_decay", type=non_negative_float)
    flag("warmup_steps", type=non_negative_int)
    flag("attention_regularization", "lambda of the doubly stochastic attention regularisation; 0 turns it off",
         type=non_negative_float)
    flag("attention_supervision", "mu of the attention supervision: mean -log(attention mass inside the named "
         "object's box) over naming words, for data with boxes (composed scenes); 0 (default) turns it off",
         type=non_negative_float)
    flag("max_caption_tokens", "longer captions are cut for training", type=positive_int)


ENCODER_FLAGS = ("encoder", "image_size", "trainable_stages")
DECODER_FLAGS = ("attention", "feature_size", "embedding_size", "hidden_size", "attention_size", "dropout")


def run_train(args) -> int:
    from genseq.distributed import shutdown
    from genseq.errors import ConfigError

    from .encoder import EncoderConfig
    from .train import NEEDS_ATTENTION, CaptionTrainConfig, DataSpec, train_captioner

    model_flags = [name for name in ENCODER_FLAGS + DECODER_FLAGS if getattr(args, name) is not None]
    tokenizer_flags = given_tokenizer_flags(args)
    if args.init:
        check_init(args, model_flags + tokenizer_flags)
    out_dir = run_directory(args.out, args.resume, changes_model=bool(model_flags or args.tokenizer))
    data = DataSpec(args.data, args.valid, args.split, args.valid_split, args.image_column, tuple(args.caption_columns or ()))
    encoder_options = {name: getattr(args, name) for name in ("image_size", "trainable_stages") if getattr(args, name) is not None}
    if args.encoder:
        encoder_options["name"] = args.encoder
    encoder_options["storage"] = "float32" if encoder_options.get("trainable_stages") else "float16"
    saved = saved_training_config(out_dir) if args.resume else None
    config = build_config(CaptionTrainConfig, args, saved, frozen=("batch_size", "seed"), progress=not args.no_progress)
    decoder_options = {name: getattr(args, name) for name in DECODER_FLAGS if getattr(args, name) is not None}
    encoder_config = EncoderConfig(**encoder_options)
    if not (args.resume or args.init):
        check_new_model(args, encoder_config, decoder_options, config)
        if config.attention_supervision and args.attention is False:
            raise ConfigError(NEEDS_ATTENTION)
    try:
        trainer = train_captioner(
            data, out_dir, config, encoder_config, args.encoder_weights, decoder_options,
            vocab_size=args.vocab_size, tokenizer_type=args.tokenizer_type, tokenizer_path=args.tokenizer,
            resume=bool(args.resume), init=args.init,
        )
    finally:
        shutdown()
    progress = trainer.progress
    return training_outcome("captioning", args, out_dir, progress.finished, progress.step,
                            lambda: f"best validation BLEU-4 {progress.best['bleu4']:.4f}",
                            data_flags={"split": "train", "valid_split": "validation", "image_column": None,
                                        "caption_columns": None}, is_main=trainer.world.is_main)


def check_init(args, fixed: list[str]) -> None:
    """Refuse what a run from --init cannot do: resume (a run continues from its own checkpoint), or change the
    encoder, decoder or tokenizer of the captioner it starts from (fixed: the flags given that would)."""
    from genseq.errors import ConfigError

    if args.resume:
        raise ConfigError("--init starts a new run from a captioner and --resume continues a run from its own "
                          "checkpoint; drop --init")
    fixed = fixed + (["encoder_weights"] if args.encoder_weights != "auto" else [])
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise ConfigError(f"{flags} would change the captioner --init {args.init} starts from, which such a run keeps; "
                          "drop them, or train a new captioner without --init")


def check_new_model(args, encoder_config, decoder_options: dict, config) -> None:
    """Build the decoder's config, resolve --encoder-weights and check that training fits in memory, before any
    data is read."""
    from genseq.memory import FLOAT_BYTES, TRAINING_COPIES, check_fits
    from genseq.tokenizer import Tokenizer
    from genseq.runs import resolve_device

    from .decoder import DecoderConfig
    from .train import pretrained_source

    pretrained_source(encoder_config.name, args.encoder_weights)
    vocab_size = Tokenizer.load(args.tokenizer).vocab_size if args.tokenizer else args.vocab_size
    decoder = DecoderConfig(**{**decoder_options, "vocab_size": vocab_size})
    D, E, H, V = decoder.feature_size, decoder.embedding_size, decoder.hidden_size, decoder.vocab_size
    parameters = decoder.feature_channels * D + V * E + 4 * H * (E + D + H) + H * V
    tokens = config.batch_size * config.max_caption_tokens
    side = encoder_config.image_size
    activations = max(tokens * (2 * V + 6 * H + E), config.batch_size * 3 * side * side)
    check_fits(FLOAT_BYTES * (TRAINING_COPIES * parameters + activations),
               f"training a captioner with hidden size {H}, vocabulary {V} and {side}-pixel images on batches of "
               f"{config.batch_size}", "use smaller --hidden-size, --embedding-size, --feature-size, --vocab-size, "
               "--image-size or --batch-size", resolve_device(config.device))


# ---- genseq eval captioning ------------------------------------------------------------------
def add_eval_arguments(parser) -> None:
    parser.add_argument("--model", type=path, help="captioner checkpoint directory (default: the shipped captioner)")
    _add_data_arguments(parser, "validation")
    parser.add_argument("--num-beams", type=positive_int, nargs="+", default=[1, 3],
                        help="beam widths to evaluate; 1 is greedy (default: 1 3)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=40)
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images decoded together")
    parser.add_argument("--no-meteor", dest="meteor", action="store_false",
                        help="leave METEOR out (it starts a Java process; without Java it is left out anyway)")
    add_device_flag(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_eval(args) -> dict:
    from genseq.runs import resolve_device

    from .captioner import load_captioner
    from .data import load_caption_set
    from .evaluate import evaluate_captioner

    captioner = load_captioner(args.model, device=resolve_device(args.device))
    data = load_caption_set(args.data, args.split, args.image_column, args.caption_columns)
    progress = not (args.no_progress or getattr(args, "json", False))
    return evaluate_captioner(captioner, data, args.num_beams, args.max_new_tokens, args.batch_size, progress, args.meteor)


METRIC_LABELS = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "cider": "CIDEr-D",
                 "rouge_l": "ROUGE-L", "meteor": "METEOR"}
DECODING_METRIC = re.compile(r"(greedy|beam\d+)_(\w+)")


def format_metrics(metrics: dict) -> str:
    """run_eval's metrics as people read them: one row per decoding, one column per metric, the rest below."""
    rows, columns, rest = {}, [], []
    for key, value in metrics.items():
        match = DECODING_METRIC.fullmatch(key)
        if not match:
            rest.append(f"{key}: {_text(value)}")
            continue
        decoding, metric = match.groups()
        rows.setdefault(decoding, {})[metric] = value
        if metric not in columns:
            columns.append(metric)
    labels = [METRIC_LABELS.get(metric, metric) for metric in columns]
    lines = ["  ".join(["decoding".ljust(8), *(label.rjust(7) for label in labels)])]
    for decoding, values in rows.items():
        cells = [_cell(values.get(metric), len(label)) for metric, label in zip(columns, labels)]
        lines.append("  ".join([decoding.ljust(8), *cells]))
    return "\n".join(lines + rest)


def _cell(value, width: int) -> str:
    return ("-" if value is None else _text(value)).rjust(max(width, 7))


def _text(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
