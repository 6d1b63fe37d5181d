"""The Train tab's from-scratch recipe (the completion task's text_training) on one thread against all cores.

A browser training job runs beside the web server, which generates for people
meanwhile, so genseq.jobs gives it one thread fewer than the cores. This runs
the recipe as `genseq train` for --seconds of training, in alternating rounds,
with OMP_NUM_THREADS=1 and with OMP_NUM_THREADS=cores, and prints the steps per
second of each (the run's own metrics.jsonl: training time, not start-up) and
the ratio one thread / all cores. On a busy machine threads that spin against
the other work make every step slower; on an idle one, all cores are faster.

    python benchmarks/bench_train_threads.py [--seconds 30] [--rounds 2] [--data tests/data/corpus/sonnets_train.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from genseq.plugins import discover

ROOT = Path(__file__).resolve().parents[1]


def steps_per_second(data: str, seconds: float, threads: int) -> float:
    declared = next(info for info in discover() if info.name == "completion").task_class.text_training
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = declared.command("completion", "from scratch", data, data, str(out), seconds, {})
        subprocess.run([sys.executable, "-m", "genseq", *command, "--no-progress", "--device", "cpu"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads), "GENSEQ_CACHE_DIR": folder},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        train = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        last = [record for record in train if record["split"] == "train"][-1]
        return last["step"] / last["time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT / "tests" / "data" / "corpus" / "sonnets_train.txt"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    one, every = [], []
    for _ in range(args.rounds):
        one.append(steps_per_second(args.data, args.seconds, 1))
        every.append(steps_per_second(args.data, args.seconds, cores))
    print(f"1 thread:  {statistics.median(one):.2f} steps/s  (rounds: {', '.join(f'{v:.2f}' for v in one)})")
    print(f"{cores} threads: {statistics.median(every):.2f} steps/s  (rounds: {', '.join(f'{v:.2f}' for v in every)})")
    print(f"ratio 1 thread / {cores} threads: {statistics.median(one) / statistics.median(every):.2f}")


if __name__ == "__main__":
    main()
