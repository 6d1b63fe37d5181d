"""`genseq lab gradients`: vanishing and exploding gradients in RNN, GRU and LSTM, measured on small models."""

from __future__ import annotations

import argparse
import json
import sys

from ..commands import check_writable, finite_float, path, positive_int, whole_number


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, not {text!r}")
    return values


def lab_seed(text: str) -> int:
    from ..lab import SEED_LIMIT

    return whole_number(text, 0, SEED_LIMIT - 1)


def add_parser(subparsers) -> None:
    lab = subparsers.add_parser("lab", help="experiments on recurrent cells", description="Experiments on recurrent cells.")
    experiments = lab.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    parser = experiments.add_parser(
        "gradients", help="vanishing and exploding gradients, and recall over distance",
        description="Measure how much gradient reaches each input of a sequence in fresh and trained RNN, GRU and "
                    "LSTM layers, and train each to recall a symbol across N distractors, with and without clipping. "
                    "On a terminal, an estimate of the time it takes here comes first, then a progress bar.",
    )
    parser.add_argument("--cells", default="rnn,gru,lstm", help="comma-separated cell types (rnn,gru,lstm)")
    parser.add_argument("--length", type=positive_int, default=200, help="sequence length of the gradient measurement")
    parser.add_argument("--distractors", type=int_list, default=(5, 10, 20, 40, 80), help="the N to train at (5,10,20,40,80)")
    parser.add_argument("--steps", type=positive_int, default=600, help="training steps per model (600)")
    parser.add_argument("--hidden-size", type=positive_int, default=32)
    parser.add_argument("--clip", type=finite_float, default=1.0, help="gradient-norm bound of the clipped runs (1.0)")
    parser.add_argument("--seed", type=lab_seed, default=0, help="0 to 2**32 - 1 (0)")
    parser.add_argument("--out", type=path, metavar="PNG", help="write the two plots to this PNG")
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON document")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import atomic_write
    from ..lab import LabConfig, lab_png, norm_text

    if args.out:
        check_writable(args.out, "--out")
    config = LabConfig(cells=tuple(c.strip() for c in args.cells.split(",") if c.strip()), length=args.length,
                       distractors=args.distractors, steps=args.steps, hidden_size=args.hidden_size, clip=args.clip,
                       seed=args.seed)
    result = run_with_progress(config, shown=not args.json and interactive())
    if args.out:
        atomic_write(args.out, lab_png(result), what="picture")
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    distances = [d for d in (0, 10, 50, 100, config.length - 1) if d < config.length]
    print(f"gradient norm ||d loss / d x_t|| at distance T - t from the last of {config.length} steps:")
    print(f"{'':20}" + "".join(f"{d:>11}" for d in distances))
    for cell, norms in result.gradients.items():
        for state in ("fresh", "trained"):
            label = f"{cell}, {state}" + (f" N={norms['trained_at']}" if state == "trained" else "")
            print(f"{label:20}" + "".join(f"{norms[state][d]:11.1e}" for d in distances))
    print(f"\nrecall accuracy after N distractors ({config.steps} Adam steps each; chance {1 / config.keys:.3f})"
          f" and the largest gradient norm met in training:")
    print(f"{'':20}" + "".join(f"{n:>14}" for n in config.counts))
    for cell, kinds in result.recall.items():
        for kind in ("clipped", "unclipped"):
            cells = [f"{kinds[kind][n]:6.2f} ({norm_text(result.largest_norm[cell][kind][n])})" for n in config.counts]
            print(f"{cell + ', ' + kind:20}" + "".join(f"{c:>14}" for c in cells))
    if args.out:
        print(f"\nplots written to {args.out}")
    return 0


def interactive() -> bool:
    """Whether a person watches stderr: then the estimate and a progress bar go there."""
    return sys.stderr.isatty()


def run_with_progress(config, shown: bool):
    """The lab's result; when shown, after an estimate for this machine and with a progress bar on stderr (one
    tick per training run)."""
    from tqdm import tqdm

    from ..lab import duration_text, estimate_seconds, lab_runs, step_costs

    if shown:
        seconds = estimate_seconds(config, step_costs(config))
        print(f"about {duration_text(seconds)} on this machine ({config.runs} training runs of {config.steps} steps)",
              file=sys.stderr)
    with tqdm(total=config.runs, unit="run", disable=not shown, dynamic_ncols=True, file=sys.stderr) as bar:
        for run, result in lab_runs(config):
            bar.set_postfix_str(run.describe(), refresh=False)
            bar.update()
    return result
