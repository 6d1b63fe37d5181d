"""Budget sweep: what `genseq train completion --max-time T` reaches on a corpus, for named sets of flags.

Each run is the command a user types (`genseq train completion --data TRAIN
--valid VALID --out RUN --max-time T` plus a configuration's flags), on all the
machine's cores, one run at a time; its valid split is then scored
(`genseq eval completion`, batched) and reported in nats per character, which
compares tokenizers of any vocabulary. Configurations:

  defaults  --fixed-defaults: the fixed defaults (what --max-time alone gave before the budget-aware rule)
  hand      hand-picked flags for a small corpus and a few minutes (vocabulary 512 BPE, one tied 512 layer,
            no dropout, lr 5e-3, 20 warm-up steps)
  rule      --max-time alone: the budget-aware rule chooses the rest (genseq.budget)
  grid-*    the points the rule was derived from (GRID below)

Corpora are built from ../shared/data/text under OUT/corpora: "1mb" is the first
megabyte of Shakespeare's train split (whole lines) with its valid split,
"10mb" the first 55% of each of the four corpora's train splits (10 MB) with
the first 100 KB of each valid split. Results go to OUT/results.jsonl, one line
a run; a rerun skips the runs it has, so an interrupted sweep continues. The
last lines print each budget's ratio rule / defaults and rule / hand, and
OUT/loss-vs-budget.png plots nats per character against the budget.

    python benchmarks/budget_sweep.py --out runs/budget [--corpus 1mb] [--budgets 1m 4m 15m]
        [--configs defaults hand rule] [--data ../shared/data/text]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ("austen", "mobydick", "shakespeare", "sotu")

TODAY = ["--fixed-defaults"]
HAND = ["--fixed-defaults", "--vocab-size", "512", "--tokenizer-type", "bpe", "--embedding-size", "512",
        "--hidden-size", "512", "--layers", "1", "--tie-weights", "--dropout", "0", "--lr", "5e-3", "--warmup-steps", "20"]


def small(vocab: int = 512, hidden: int = 512, layers: int = 1, dropout: float = 0.0, lr: float = 5e-3,
          batch: int = 32, bptt: int = 64, warmup: int = 20, tokenizer: str = "bpe") -> list[str]:
    """Flags of a tied model with embedding = hidden: the family the grid explores."""
    return ["--fixed-defaults", "--vocab-size", str(vocab), "--tokenizer-type", tokenizer, "--embedding-size", str(hidden),
            "--hidden-size", str(hidden), "--layers", str(layers), "--tie-weights", "--dropout", str(dropout),
            "--lr", str(lr), "--batch-size", str(batch), "--bptt", str(bptt), "--warmup-steps", str(warmup)]


GRID = {
    "grid-v1024": small(vocab=1024), "grid-v2048": small(vocab=2048), "grid-v4096": small(vocab=4096),
    "grid-h256": small(hidden=256), "grid-h768": small(hidden=768), "grid-h1024": small(hidden=1024),
    "grid-lr2.5e-3": small(lr=2.5e-3), "grid-lr1e-2": small(lr=1e-2),
    "grid-2x384": small(hidden=384, layers=2), "grid-2x512": small(layers=2), "grid-batch16": small(batch=16),
    "grid-batch64": small(batch=64), "grid-bptt128": small(bptt=128),
    "grid-h768-d0.1": small(hidden=768, dropout=0.1), "grid-h768-d0.2": small(hidden=768, dropout=0.2),
    "grid-h1024-d0.2": small(hidden=1024, dropout=0.2), "grid-v1024-h768": small(vocab=1024, hidden=768),
    "grid-v1024-h768-d0.1": small(vocab=1024, hidden=768, dropout=0.1),
    "grid-v2048-h768": small(vocab=2048, hidden=768), "grid-v2048-h1024": small(vocab=2048, hidden=1024),
    "grid-v4096-h1024": small(vocab=4096, hidden=1024), "grid-v4096-2x768": small(vocab=4096, hidden=768, layers=2),
    "grid-h128": small(hidden=128), "grid-h384": small(hidden=384), "grid-h256-lr1e-2": small(hidden=256, lr=1e-2),
    "grid-h256-char": small(hidden=256, vocab=400, tokenizer="char"), "grid-h256-v1024": small(hidden=256, vocab=1024),
    "grid-h256-d0.1": small(hidden=256, dropout=0.1), "grid-h384-d0.1": small(hidden=384, dropout=0.1),
    "grid-h384-v1024": small(hidden=384, vocab=1024), "grid-h512-d0.1": small(dropout=0.1),
    "grid-h512-d0.2": small(dropout=0.2), "grid-h256-2x": small(hidden=256, layers=2),
    "grid-h256-b16": small(hidden=256, batch=16), "grid-h384-d0.1-b16": small(hidden=384, dropout=0.1, batch=16),
    "grid-h256-d0.1-b16": small(hidden=256, dropout=0.1, batch=16),
}
CONFIGS = {"defaults": TODAY, "hand": HAND, "rule": [], **GRID}


def lines_up_to(paths: list[Path], limit: int) -> str:
    """The text of paths in order, cut after the last whole line within limit bytes."""
    text, size = [], 0
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            size += len(line.encode())
            if size > limit:
                return "".join(text)
            text.append(line)
    return "".join(text)


def build_corpus(name: str, data: Path, out: Path) -> tuple[Path, Path]:
    """OUT/corpora/NAME/{train,valid}.txt, written once."""
    folder = out / "corpora" / name
    train, valid = folder / "train.txt", folder / "valid.txt"
    if train.exists() and valid.exists():
        return train, valid
    folder.mkdir(parents=True, exist_ok=True)
    files = lambda corpus, split: sorted((data / corpus / split).glob("*.txt"))  # noqa: E731
    if name == "1mb":
        train_text = lines_up_to(files("shakespeare", "train"), 1_000_000)
        valid_text = "".join(path.read_text(encoding="utf-8") for path in files("shakespeare", "valid"))
    elif name == "10mb":
        share = lambda corpus: int(0.55 * sum(p.stat().st_size for p in files(corpus, "train")))  # noqa: E731
        train_text = "".join(lines_up_to(files(corpus, "train"), share(corpus)) for corpus in CORPORA)
        valid_text = "".join(lines_up_to(files(corpus, "valid"), 100_000) for corpus in CORPORA)
    else:
        raise SystemExit(f"budget_sweep: unknown corpus {name!r}; use 1mb or 10mb")
    valid.write_text(valid_text, encoding="utf-8")
    train.write_text(train_text, encoding="utf-8")
    return train, valid


def seconds(budget: str) -> float:
    return float(budget[:-1]) * 60 if budget.endswith("m") else float(budget.rstrip("s"))


def genseq(*args: str, **options) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "genseq"), *args]
    return subprocess.run(command, text=True, capture_output=True, **options)


def run_one(corpus: str, budget: str, name: str, train: Path, valid: Path, out: Path) -> dict:
    """Train one configuration for budget, score its valid split; the result line."""
    run = out / "runs" / f"{corpus}-{budget}-{name}"
    if run.exists():
        subprocess.run(["rm", "-rf", str(run)], check=True)
    started = time.monotonic()
    trained = genseq("train", "completion", "--data", str(train), "--valid", str(valid), "--out", str(run),
                     "--max-time", str(seconds(budget)), "--no-progress", "--seed", "0", *CONFIGS[name])
    wall = time.monotonic() - started
    (out / "logs").mkdir(exist_ok=True)
    (out / "logs" / f"{corpus}-{budget}-{name}.log").write_text(trained.stdout + trained.stderr)
    if trained.returncode != 0:
        raise SystemExit(f"budget_sweep: {name} failed ({trained.returncode}); see {out / 'logs'}")
    scored = genseq("eval", "completion", "--model", str(run), "--data", str(valid), "--json")
    if scored.returncode != 0:
        raise SystemExit(f"budget_sweep: scoring {name} failed: {scored.stderr.strip()}")
    result = json.loads(scored.stdout)
    config = json.loads((run / "config.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r.get("split") == "train"]
    return {"corpus": corpus, "budget": budget, "config": name, "flags": CONFIGS[name],
            "nats_per_char": result["nll"] / len(valid.read_text(encoding="utf-8")),
            "token_perplexity": result["token_perplexity"], "steps": int(re.search(r"trained (\d+) steps", trained.stderr).group(1)),
            "train_seconds": train_records[-1]["time"] if train_records else 0.0, "wall_seconds": round(wall, 1),
            "model_config": config.get("model_config"), "vocab_size": config.get("tokenizer", {}).get("vocab_size"),
            "chosen": config.get("training_config", {}).get("budget_rule"), "cpu_count": os.cpu_count()}


def report(results: list[dict], out: Path) -> None:
    table = {(r["corpus"], r["budget"], r["config"]): r["nats_per_char"] for r in results}
    print(f"{'corpus':6} {'budget':>6} {'config':22} {'nats/char':>9} {'steps':>6}")
    for r in sorted(results, key=lambda r: (r["corpus"], seconds(r["budget"]), r["nats_per_char"])):
        print(f"{r['corpus']:6} {r['budget']:>6} {r['config']:22} {r['nats_per_char']:9.4f} {r['steps']:6d}")
    for (corpus, budget, name), value in sorted(table.items()):
        if name != "rule":
            continue
        for other in ("defaults", "hand"):
            if (corpus, budget, other) in table:
                reference = table[corpus, budget, other]
                print(f"{corpus} {budget}: rule / {other} = {value / reference:.3f} "
                      f"({100 * (1 - value / reference):.1f}% fewer nats per character)")
    plot(results, out / "loss-vs-budget.png")


def plot(results: list[dict], path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from genseq.figures import png_bytes, pyplot, readable

    plt = pyplot()
    names = {"defaults": ("fixed defaults", "tab:gray"), "hand": ("hand-picked flags", "tab:orange"),
             "rule": ("budget rule", "tab:blue")}
    with readable():
        figure, axes = plt.subplots(figsize=(8, 4.5))
        for corpus, marker, style, words in (("1mb", "o", "-", "1 MB Shakespeare"), ("10mb", "s", "--", "10 MB, four corpora")):
            for name, (label, colour) in names.items():
                points = sorted((seconds(r["budget"]) / 60, r["nats_per_char"]) for r in results
                                if r["corpus"] == corpus and r["config"] == name)
                if points:
                    axes.plot(*zip(*points), style, marker=marker, color=colour, label=f"{label}, {words}")
        minutes = sorted({seconds(r["budget"]) / 60 for r in results})
        axes.set_xscale("log")
        axes.set_xticks(minutes, [f"{m:g}" for m in minutes])
        axes.minorticks_off()
        axes.set_xlabel("training budget (minutes of --max-time, 2 CPU cores)")
        axes.set_ylabel("valid nats per character")
        axes.legend(fontsize=10)
        axes.grid(alpha=0.3)
        path.write_bytes(png_bytes(figure, dpi=100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="sweep directory (results.jsonl, runs/, corpora/)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "text")
    parser.add_argument("--corpus", choices=("1mb", "10mb"), default="1mb")
    parser.add_argument("--budgets", nargs="+", default=["4m"], help="--max-time of each run (60s, 4m, ...)")
    parser.add_argument("--configs", nargs="+", default=["defaults", "hand", "rule"], choices=sorted(CONFIGS))
    parser.add_argument("--again", action="store_true", help="rerun the runs results.jsonl already has")
    parser.add_argument("--report", action="store_true", help="print the table and plot from results.jsonl only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    if not args.report:
        if not args.data.is_dir():
            raise SystemExit(f"budget_sweep: {args.data} is not the shared text corpora; pass --data")
        train, valid = build_corpus(args.corpus, args.data, args.out)
        for budget in args.budgets:
            for name in args.configs:
                key = (args.corpus, budget, name)
                if not args.again and any((r["corpus"], r["budget"], r["config"]) == key for r in results):
                    continue
                result = run_one(*key, train, valid, args.out)
                print(f"{args.corpus} {budget} {name}: {result['nats_per_char']:.4f} nats/char, "
                      f"{result['steps']} steps", flush=True)
                results = [r for r in results if (r["corpus"], r["budget"], r["config"]) != key] + [result]
                results_file.write_text("".join(json.dumps(r) + "\n" for r in results))
    report(results, args.out)


if __name__ == "__main__":
    main()
