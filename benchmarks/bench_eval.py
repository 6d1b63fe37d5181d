"""Evaluation speed: `genseq eval completion`'s batched scoring against the exact single stream, on one text.

The paths score the same tokens with the same model (the embedded default
unless --model) in the same process, in alternating rounds: the exact path
runs the text as one stream with the state carried (--exact), the batched
path cuts it into documents and pieces scored side by side, and batched int8
does so with its matrix products in int8 (--precision int8). Each line gives
the tokens per second and the total NLL; the last lines the speed ratio of
each batched path to the exact one (best round of each) and how far its NLL
is from the exact one.

    python benchmarks/bench_eval.py [--text GLOB] [--max-tokens 20000] [--rounds 1] [--threads N]
"""

from __future__ import annotations

import argparse
import glob
import math
import time
from pathlib import Path

import numpy as np
import torch

from genseq import capabilities, default_model_dir, from_pretrained
from genseq.data import TokenStream
from genseq.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent
SHARED_VALID = str(ROOT.parent / "shared" / "data" / "text" / "*" / "valid" / "*.txt")
TEST_TEXT = str(ROOT / "tests" / "data" / "*" / "*.txt")
PATHS = {"exact": {"exact": True}, "batched": {}, "batched int8": {"precision": "int8"}}  # evaluate()'s options


def token_stream(files: list[str], tokenizer, max_tokens: int) -> TokenStream:
    """[EOS] doc [EOS] doc ... of files, the first max_tokens // len(files) tokens of each, as `genseq eval` lays them out."""
    per_file, ids = max_tokens // len(files), [tokenizer.eos_id]
    for path in files:
        ids += (tokenizer.encode(open(path, encoding="utf-8").read()) + [tokenizer.eos_id])[:per_file]
    return TokenStream(np.array(ids, dtype=np.int32), words=1, bytes=1)


def timed(function) -> tuple[float, float]:
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    parser.add_argument("--text", help="glob of text files (default: the shared corpora's valid splits, else tests/data)")
    parser.add_argument("--max-tokens", type=int, default=20_000, help="tokens to score, shared equally by the files")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; the best of each side counts")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(glob.glob(args.text or SHARED_VALID)) or sorted(glob.glob(TEST_TEXT))
    model, tokenizer = from_pretrained(args.model or default_model_dir())
    stream = token_stream(files, tokenizer, args.max_tokens)
    print(f"model {args.model or 'embedded default'}: {model.num_parameters():,} parameters; {len(files)} files, "
          f"{len(stream.tokens) - 1:,} tokens scored; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"this machine: {capabilities.describe('cpu')}")
    best, nll = {name: math.inf for name in PATHS}, {}
    for _ in range(args.rounds):  # other processes only ever add time, so the best round is the measure
        for name, options in PATHS.items():
            metrics, seconds = timed(lambda: evaluate(model, stream, eos_id=tokenizer.eos_id, **options))
            best[name], nll[name] = min(best[name], seconds), metrics["nll"]
    scored = len(stream.tokens) - 1
    for name in best:
        print(f"{name:<13} {scored / best[name]:8.0f} tok/s   nll {nll[name]:.3f}   {nll[name] / scored:.4f} nats/token")
    for name in list(PATHS)[1:]:
        difference = 100 * (nll[name] / nll["exact"] - 1)
        print(f"ratio {name} / exact tokens per second: {best['exact'] / best[name]:.2f}x; "
              f"NLL difference {difference:+.3f}%")


if __name__ == "__main__":
    main()
