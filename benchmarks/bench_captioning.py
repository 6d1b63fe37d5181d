"""Beam-search captioning speed: genseq's batched decoder against a one-image, one-beam-at-a-time reference.

Both caption the same 64 images with 3 beams from the same encoder features
(computed once beforehand, so the decoder is what is measured), in the same
process on the same threads (torch's default, every core, unless --threads
says otherwise). The reference is the loop that popular tutorials write: for
each image, for each step, for each live beam, one call through the decoder's
modules, then a Python sort of the candidates. genseq advances
every beam of every image in one fused step per word (genseq's generation
engine). Hypotheses are ranked the same way in both (log-probability /
length), so their captions agree; the fraction that does is printed.

    python benchmarks/bench_captioning.py [--images 64] [--beams 3] [--repeats 3] [--threads N] [--bf16]

genseq's step also runs in precision auto (the fastest of fp32 and bf16 on this
machine, measured) and, where this CPU multiplies bf16 natively or --bf16 is
given, in bf16; the header line says what this machine's probes found.

The last line is the speed ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from genseq import capabilities
from genseq.generation import GenerationConfig

from genseq_captioning.captioner import Captioner, load_captioner

SHARED = "../shared/data/captions/validation"


def features_of(captioner: Captioner, count: int) -> torch.Tensor:
    """(count, C, h, w) features of validation images (evenly spaced) when ../shared is there, else of noise images."""
    from pathlib import Path

    from genseq_captioning.images import load_batch

    config = captioner.encoder.config
    folder = Path(SHARED)
    if folder.exists():
        every = sorted(str(p) for p in folder.rglob("*.png"))
        sources = every[:: max(1, len(every) // count)][:count]  # spread over both sources: emoji and Tux Paint stamps
        pixels = load_batch(sources, config.image_size, config.mean, config.std).pixels
    else:
        pixels = torch.rand(count, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
    return captioner.encode_images(pixels)


@torch.inference_mode()
def reference_beam_search(captioner: Captioner, features: torch.Tensor, beams: int, max_len: int,
                          cache_keys: bool = False) -> list[list[int]]:
    """One image at a time, one beam per decoder call: the tutorial way.

    Like the tutorials' attention module, each call projects the image's
    annotation vectors to attention keys again, unless cache_keys.
    """
    decoder, bos, eos = captioner.decoder, captioner.tokenizer.bos_id, captioner.tokenizer.eos_id
    captions = []
    for image in features.split(1):
        h, c, annotations, keys = decoder.initial_state(image)
        live = [([bos], 0.0, h[0], c[0])]  # (tokens, logprob, h (1, H), c (1, H))
        done: list[tuple[list[int], float]] = []
        for _ in range(max_len):
            candidates = []
            for tokens, logprob, h, c in live:
                step_keys = keys if cache_keys else decoder.key(annotations)
                log_probs, h, c = _reference_step(decoder, tokens[-1], h, c, annotations, step_keys)
                top = log_probs.topk(beams)
                for value, token in zip(top.values.tolist(), top.indices.tolist()):
                    candidates.append((tokens + [token], logprob + value, h, c))
            candidates.sort(key=lambda item: -item[1])
            live = []
            for tokens, logprob, h, c in candidates[:beams]:
                if tokens[-1] == eos:
                    done.append((tokens[1:], logprob))
                else:
                    live.append((tokens, logprob, h, c))
            if len(done) >= beams or not live:
                break
        done += [(tokens[1:], logprob) for tokens, logprob, _, _ in live]
        captions.append(max(done, key=lambda item: item[1] / len(item[0]))[0])
    return captions


def _reference_step(decoder, token: int, h, c, annotations, keys):
    x = decoder.embedding(torch.tensor([token]))  # (1, E)
    if decoder.config.attention:
        _, context = decoder.attend(h, annotations, keys)
        x = torch.cat([x, context], 1)
    h, c = decoder.cell(x, (h, c))
    return decoder.output(h)[0].log_softmax(-1), h, c


def timed(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="(default: torch's, every core)")
    parser.add_argument("--bf16", action="store_true", help="time bf16 even where this CPU only emulates it (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    captioner = load_captioner()
    features = features_of(captioner, args.images)
    config = GenerationConfig(num_beams=args.beams, max_new_tokens=args.max_new_tokens)
    fast_seconds, fast = timed(lambda: captioner.generate(features, config), args.repeats)
    auto_seconds, _ = timed(lambda: captioner.generate(features, config.updated(precision="auto")), args.repeats)
    native = capabilities.bf16_decoding_is_faster("cpu")
    bf16_seconds = (timed(lambda: captioner.generate(features, config.updated(precision="bf16")), args.repeats)[0]
                    if native or args.bf16 else None)
    cached_seconds, _ = timed(lambda: reference_beam_search(captioner, features, args.beams, args.max_new_tokens, True),
                              args.repeats)
    slow_seconds, slow = timed(lambda: reference_beam_search(captioner, features, args.beams, args.max_new_tokens),
                               args.repeats)
    same = sum(best[0].tokens == tokens for best, tokens in zip(fast, slow)) / len(slow)
    print(f"images {args.images}, beams {args.beams}, features {tuple(features.shape[1:])}, {args.threads} thread(s), best of {args.repeats}")
    print(f"this machine: {capabilities.describe('cpu')}")
    rows = [("reference, tutorial style (keys per call)", slow_seconds), ("reference with the keys cached", cached_seconds),
            ("genseq, bf16 decoding step", bf16_seconds), ("genseq, auto precision", auto_seconds),
            ("genseq (every image and beam per call)", fast_seconds)]
    for name, seconds in rows:
        if seconds is None:
            print(f"{name:42s} not timed: this CPU would only emulate bf16 (--bf16 times it)")
            continue
        print(f"{name:42s} {seconds:7.3f} s  {args.images / seconds:7.1f} images/s  {slow_seconds / seconds:5.1f}x")
    print(f"same best caption as the reference: {same:.0%}")
    print(f"speedup over the tutorial-style reference: {slow_seconds / fast_seconds:.1f}x")


if __name__ == "__main__":
    main()
