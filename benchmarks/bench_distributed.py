"""Training throughput on 1 and on N processes (torchrun, DDP over gloo), the same global batch.

Each configuration trains the same model for the same number of steps from
the same corpus, one thread per process:

    1 process, 1 thread          the reference
    1 process, N threads         what one process gets from the other cores
    N processes, 1 thread each   DistributedDataParallel, batch / N rows each

Tokens per second are global-batch tokens over the training seconds the run
records in metrics.jsonl (validation and start-up excluded). On a machine with
few cores and one memory bus, expect modest gains: the point of the recipe is
that the same command scales to many machines.

    python benchmarks/bench_distributed.py [--processes 2] [--steps 60] [--data PATH]

The last line is the ratio of N processes to the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = "../shared/data/text/austen/train"
FIXTURE = str(Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus")


def run(out: Path, data: str, steps: int, processes: int, threads: int, batch: int, bptt: int, tokenizer=None) -> float:
    """Trains into out; -> global tokens per training second."""
    vocabulary = ["--tokenizer", str(tokenizer)] if tokenizer else ["--vocab-size", "1000"]
    argv = ["train", "completion", "--data", data, "--out", str(out), *vocabulary, "--embedding-size", "256",
            "--hidden-size", "512", "--layers", "2", "--batch-size", str(batch), "--bptt", str(bptt),
            "--max-steps", str(steps), "--warmup-steps", "0", "--eval-every", str(steps), "--patience", "0",
            "--no-progress", "--device", "cpu"]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "genseq"]
    else:
        command = [sys.executable, "-m", "genseq"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([*command, *argv], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"training failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = max(r["time"] for r in records)
    return steps * batch * bptt / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=64)
    parser.add_argument("--data", default=SHARED if Path(SHARED).exists() else FIXTURE)
    args = parser.parse_args()
    n = args.processes
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("GENSEQ_CACHE_DIR", str(Path(folder) / "cache"))
        # tokenizer and token cache once, outside the timings
        run(Path(folder) / "warm", args.data, 2, 1, 1, args.batch_size, args.bptt)
        shape = (args.data, args.steps)
        common = (args.batch_size, args.bptt, Path(folder) / "warm" / "tokenizer.model")
        rows = [
            ("1 process, 1 thread", run(Path(folder) / "a", *shape, 1, 1, *common)),
            (f"1 process, {n} threads", run(Path(folder) / "b", *shape, 1, n, *common)),
            (f"{n} processes (DDP, gloo), 1 thread each", run(Path(folder) / "c", *shape, n, 1, *common)),
        ]
    print(f"data {args.data}, global batch {args.batch_size} x bptt {args.bptt}, {args.steps} steps, "
          "emb 256 / LSTM 2 x 512 / vocab 1000")
    reference = rows[0][1]
    for name, rate in rows:
        print(f"{name:40s} {rate:9,.0f} tokens/s  {rate / reference:5.2f}x")
    print(f"{n} processes vs 1: {rows[2][1] / reference:.2f}x")


if __name__ == "__main__":
    main()
