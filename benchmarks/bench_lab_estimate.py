"""How close the gradients lab's estimate comes to the time its runs take, on this machine.

For each setting the lab's tab offers (its defaults and its two ends, or those
given), measures each cell's step cost as the tab does just before a run
(genseq.lab.step_costs), estimates the run, then runs it and prints the
estimate, the time taken and their ratio; the probe's own time is printed
apart. On a machine whose load changes during a run the ratio moves with it.
First, why the lab runs torch on one thread: one training run (gru, N = 20,
40 steps) on torch's own thread count, the reference, then on one thread.

    python benchmarks/bench_lab_estimate.py [--steps 10,150,400] [--longest 20] [--length 100] [--cells rnn,gru,lstm]
"""

from __future__ import annotations

import argparse
import time

import torch

from genseq.lab import LabConfig, duration_text, estimate_seconds, lab_runs, one_thread, step_costs, train_recall


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def seconds_of_one_run() -> float:
    start = time.perf_counter()
    train_recall("gru", 20, LabConfig(cells=("gru",), steps=40), clip=True)
    return time.perf_counter() - start


def compare_threads() -> None:
    threads = torch.get_num_threads()
    train_recall("gru", 1, LabConfig(cells=("gru",), steps=2), clip=True)  # torch's first steps in a process: untimed
    reference = seconds_of_one_run()
    with one_thread():
        single = seconds_of_one_run()
    print(f"one training run: {reference:.2f} s on {threads} threads (reference), {single:.2f} s on one; "
          f"{reference / single:.1f} times faster on one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=numbers, default=[10, 150, 400], help="training steps per model, one run each")
    parser.add_argument("--longest", type=int, default=20, help="the longest N (N/4 is run too), as in the tab")
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--cells", default="rnn,gru,lstm")
    args = parser.parse_args()
    compare_threads()
    print(f"{'steps':>6} {'probe':>8} {'estimate':>10} {'taken':>10} {'taken / estimate':>17}")
    for steps in args.steps:
        config = LabConfig(cells=tuple(args.cells.split(",")), length=args.length,
                           distractors=(max(1, args.longest // 4), args.longest), steps=steps)
        start = time.perf_counter()
        estimate = estimate_seconds(config, step_costs(config))
        probed = time.perf_counter()
        for _ in lab_runs(config):
            pass
        taken = time.perf_counter() - probed
        print(f"{steps:>6} {probed - start:>7.2f}s {duration_text(estimate):>10} {duration_text(taken):>10} "
              f"{taken / estimate:>17.2f}")


if __name__ == "__main__":
    main()
