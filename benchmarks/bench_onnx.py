"""ONNX export against genseq's own decoding step, on the same model in the same process.

For each precision (fp32, int8) it times genseq's fused step (decoding_step,
the kernel it measures fastest here) and the exported graph in onnxruntime
(through examples/onnx-runner), greedy decoding with the argmax fed back, in
alternating rounds, best round of each side: one stream and 64 streams. It
also prints the file sizes, the load times (checkpoint -> step ready; export
directory -> session ready), the largest logit difference of the fp32 graph
over 8 steps (beside that of genseq's step from its own nn.LSTM forward), and
the perplexity of fp32 and int8 graphs on a text. The last line holds the
ratios ONNX / genseq.

    python benchmarks/bench_onnx.py [--model default|DIR] [--threads 1] [--rounds 5] [--steps 100]
                                    [--text '../shared/data/text/mobydick/valid/*'] [--max-tokens 3000]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from genseq import capabilities
from genseq.checkpoint import WEIGHTS_FILE, from_pretrained
from genseq.defaults import default_model_dir
from genseq.export import MODEL_FILE, export_onnx
from genseq.generation import decoding_step

ROOT = Path(__file__).resolve().parents[1]
STREAMS = 64


def load_runner():
    spec = importlib.util.spec_from_file_location("onnx_runner", ROOT / "examples" / "onnx-runner" / "runner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_seconds(function, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def genseq_greedy(step, model, streams: int, steps: int):
    def run():
        ids, state = torch.arange(streams) + 10, model.initial_state(streams)
        for _ in range(steps):
            logits, state = step(ids, state)
            ids = logits.argmax(-1)
    return run


def onnx_greedy(exported, streams: int, steps: int):
    def run():
        ids, state = np.arange(streams) + 10, exported.initial_state(streams)
        for _ in range(steps):
            logits, state = exported.step(ids, state)
            ids = logits.argmax(-1)
    return run


def compare_speed(model, exported, precision: str, args) -> list[float]:
    """Tokens/s of both sides at 1 and STREAMS streams, alternating rounds; returns the ratios ONNX / genseq."""
    step, ratios = decoding_step(model, precision), []
    for streams in (1, STREAMS):
        ours, theirs = genseq_greedy(step, model, streams, args.steps), onnx_greedy(exported, streams, args.steps)
        ours(), theirs()  # warm up: genseq measures its kernels on a step's first call
        genseq_best, onnx_best = float("inf"), float("inf")
        for _ in range(args.rounds):
            genseq_best = min(genseq_best, best_seconds(ours, 1))
            onnx_best = min(onnx_best, best_seconds(theirs, 1))
        genseq_rate, onnx_rate = streams * args.steps / genseq_best, streams * args.steps / onnx_best
        ratios.append(onnx_rate / genseq_rate)
        print(f"{precision} {streams:>2} stream(s): genseq {genseq_rate:8.0f} tok/s   "
              f"onnxruntime {onnx_rate:8.0f} tok/s   ratio {ratios[-1]:.2f}x")
    return ratios


@torch.no_grad()
def largest_logit_differences(model, exported, steps: int = 8) -> tuple[float, float, float]:
    """Over steps greedy steps of 4 rows: (max |fp32 graph - genseq's step|, max |genseq's step - the model's
    nn.LSTM forward|, the largest |logit|): the second is fp32's own spread, what the first compares with."""
    step, ids = model.stepper(), torch.tensor([5, 17, 300, 1000])
    state, onnx_state, forward_state = model.initial_state(4), exported.initial_state(4), model.initial_state(4)
    onnx_worst = forward_worst = scale = 0.0
    for _ in range(steps):
        logits, state = step(ids, state)
        onnx_logits, onnx_state = exported.step(ids.numpy(), onnx_state)
        forward_logits, forward_state = model(ids[:, None], forward_state)
        onnx_worst = max(onnx_worst, float(np.abs(onnx_logits - logits.numpy()).max()))
        forward_worst = max(forward_worst, float((forward_logits[:, 0] - logits).abs().max()))
        scale = max(scale, float(logits.abs().max()))
        ids = logits.argmax(-1)
    return onnx_worst, forward_worst, scale


def load_seconds(directory: Path, export: Path, runner, rounds: int) -> tuple[float, float]:
    def load_genseq():
        model, _ = from_pretrained(directory)
        model.stepper()

    return best_seconds(load_genseq, rounds), best_seconds(lambda: runner.ExportedModel(export, threads=1), rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="a language model checkpoint, or default")
    parser.add_argument("--threads", type=int, default=1, help="threads of both torch and onnxruntime (default 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="tokens per stream in a round")
    parser.add_argument("--text", default=str(ROOT.parent / "shared/data/text/mobydick/valid/*"),
                        help="files whose first --max-tokens tokens the perplexities are measured on")
    parser.add_argument("--max-tokens", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runner = load_runner()
    directory = default_model_dir() if args.model == "default" else Path(args.model)
    model, tokenizer = from_pretrained(directory)
    print(f"model: {directory} {model.config.to_dict()}")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} thread(s); "
          f"this machine: {capabilities.describe('cpu')}")
    with tempfile.TemporaryDirectory() as scratch:
        exports = {precision: Path(scratch) / precision for precision in ("fp32", "int8")}
        for precision, out in exports.items():
            export_onnx(model, tokenizer, out, precision)
        loaded = {precision: runner.ExportedModel(out, threads=args.threads) for precision, out in exports.items()}
        sizes = {precision: (out / MODEL_FILE).stat().st_size / 1e6 for precision, out in exports.items()}
        print(f"files: checkpoint {WEIGHTS_FILE} {(directory / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB, "
              f"model.onnx fp32 {sizes['fp32']:.1f} MB, int8 {sizes['int8']:.1f} MB")
        genseq_load, onnx_load = load_seconds(directory, exports["fp32"], runner, args.rounds)
        print(f"load (best of {args.rounds}): genseq checkpoint -> step {genseq_load * 1000:.0f} ms, "
              f"onnxruntime session (fp32) {onnx_load * 1000:.0f} ms")
        onnx_worst, forward_worst, scale = largest_logit_differences(model, loaded["fp32"])
        print(f"largest |logit difference| over 8 steps of 4 rows: fp32 graph vs genseq's step {onnx_worst:.1e}; "
              f"genseq's step vs its own nn.LSTM forward {forward_worst:.1e} (logits up to {scale:.1f})")
        text = perplexity_text(args, tokenizer)
        fp32, int8 = loaded["fp32"].perplexity(text), loaded["int8"].perplexity(text)
        print(f"perplexity on {len(tokenizer.encode(text))} tokens of {args.text}: fp32 {fp32:.3f}, int8 {int8:.3f} "
              f"({(int8 / fp32 - 1) * 100:+.2f}%)")
        ratios = {precision: compare_speed(model, loaded[precision], precision, args) for precision in exports}
    print(f"ratios (onnxruntime / genseq): fp32 tok/s single {ratios['fp32'][0]:.2f}x, {STREAMS} streams "
          f"{ratios['fp32'][1]:.2f}x; int8 single {ratios['int8'][0]:.2f}x, "
          f"{STREAMS} streams {ratios['int8'][1]:.2f}x; "
          f"load {onnx_load / genseq_load:.2f}x the time")


def perplexity_text(args, tokenizer) -> str:
    """The first --max-tokens tokens of the --text files, as text."""
    files = sorted(glob.glob(args.text))
    if not files:
        raise SystemExit(f"--text {args.text} matches no file")
    text = "\n".join(Path(name).read_text(encoding="utf-8") for name in files)
    return tokenizer.decode(tokenizer.encode(text)[: args.max_tokens])


if __name__ == "__main__":
    main()
