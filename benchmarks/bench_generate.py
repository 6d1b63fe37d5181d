"""Generation speed: genseq's engine against the usual PyTorch loops, on one randomly initialised model.

Both sides use the same model (embedding 256 -> 2-layer LSTM 512 -> linear to
8000) in the same process, in alternating rounds, and consume the prompt in
one call. The reference calls nn.LSTM one time step at a time with the hidden
state carried and samples with torch.multinomial, as pytorch/examples'
word_language_model/generate.py does; its beam search advances each beam
separately. EOS is made impossible (its output bias is -100) so that every run
generates exactly the same number of tokens. The last line holds the three
ratios genseq / reference of tokens per second (best round of each side).

    python benchmarks/bench_generate.py [--rounds 5] [--tokens 200] [--threads N] [--precision [--bf16]]
    python benchmarks/bench_generate.py --perplexity CHECKPOINT --text GLOB [--max-tokens 50000]
"""

from __future__ import annotations

import argparse
import glob
import math
import time

import torch
import torch.nn.functional as F

from genseq import LanguageModel, ModelConfig, capabilities
from genseq.generation import PRECISIONS, GenerationConfig, decoding_step, generate_ids, next_token

VOCAB, EMBEDDING, HIDDEN, LAYERS = 8000, 256, 512, 2
EOS, PROMPT_LENGTH, BATCH, BEAMS = 3, 16, 64, 5


# ---- the reference loops ------------------------------------------------------------------
@torch.no_grad()
def reference_sample(model, prompts, steps, generator=None, sampler=None):
    """prompts (B, T) -> tokens (B, steps); greedy without a generator, else torch.multinomial."""
    out, hidden = model.core(model.embedding(prompts))
    logits, tokens = model.output(out[:, -1]), []  # (B, V)
    for _ in range(steps):
        if sampler is not None:
            token = sampler(logits)
        elif generator is None:
            token = logits.argmax(-1)
        else:
            token = torch.multinomial(logits.div(1.0).exp(), 1, generator=generator)[:, 0]
        tokens.append(token)
        out, hidden = model.core(model.embedding(token[:, None]), hidden)
        logits = model.output(out[:, 0])
    return torch.stack(tokens, 1)


@torch.no_grad()
def reference_beam_search(model, prompt, beams, steps):
    """prompt (1, T) -> the best beam's tokens; each beam is advanced by its own nn.LSTM call."""
    out, hidden = model.core(model.embedding(prompt))
    live = [([], 0.0, hidden, model.output(out[:, -1])[0].log_softmax(-1, dtype=torch.float64))]
    for _ in range(steps):
        candidates = []
        for tokens, score, hidden, log_probs in live:
            top = (score + log_probs).topk(beams)
            candidates += [(s, tokens + [t], hidden) for s, t in zip(top.values.tolist(), top.indices.tolist())]
        candidates.sort(key=lambda candidate: -candidate[0])
        live = []
        for score, tokens, hidden in candidates[:beams]:
            out, hidden = model.core(model.embedding(torch.tensor([[tokens[-1]]])), hidden)
            live.append((tokens, score, hidden, model.output(out[:, 0])[0].log_softmax(-1, dtype=torch.float64)))
    return live[0][0]


# ---- genseq --------------------------------------------------------------------------------
def genseq_tokens(model, prompts: torch.Tensor, config) -> list[list[int]]:
    """The first sequence of each prompt (B, T); genseq feeds [EOS] + prompt."""
    return [sequences[0].tokens for sequences in generate_ids(model, prompts.tolist(), config, eos_id=EOS)]


def with_start(prompts: torch.Tensor) -> torch.Tensor:
    """[EOS] + each prompt (B, T + 1): what genseq feeds, given to the reference too."""
    return torch.cat([torch.full((prompts.size(0), 1), EOS), prompts], 1)


# ---- timing --------------------------------------------------------------------------------
def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare(name, genseq_run, reference_run, tokens, rounds) -> float:
    """Alternate the two sides round by round; print and return the ratio of their best tokens/s."""
    genseq_best = reference_best = math.inf
    for _ in range(rounds):  # other processes only ever add time, so the best round is the measure
        genseq_best = min(genseq_best, seconds(genseq_run))
        reference_best = min(reference_best, seconds(reference_run))
    genseq_rate, reference_rate = tokens / genseq_best, tokens / reference_best
    print(f"{name:<34} genseq {genseq_rate:9.0f} tok/s   reference {reference_rate:9.0f} tok/s   "
          f"ratio {genseq_rate / reference_rate:5.2f}x")
    return genseq_rate / reference_rate


def make_model(seed=0) -> LanguageModel:
    torch.manual_seed(seed)
    model = LanguageModel(ModelConfig(vocab_size=VOCAB, embedding_size=EMBEDDING, hidden_size=HIDDEN, num_layers=LAYERS))
    with torch.no_grad():
        model.output.bias[EOS] = -100.0
    return model.eval()


def check_identical_tokens(model, one: torch.Tensor, steps: int) -> None:
    """Same seed, same inputs: identical tokens wherever both sides choose tokens the same way."""
    greedy = genseq_tokens(model, one, GenerationConfig(max_new_tokens=steps, temperature=0.0))[0]
    same_greedy = greedy == reference_sample(model, with_start(one), steps)[0].tolist()
    sampled = genseq_tokens(model, one, GenerationConfig(max_new_tokens=steps, seed=11))[0]
    generator = torch.Generator().manual_seed(11)  # genseq's generator of sequence 0: seed + 0
    shared = reference_sample(model, with_start(one), steps, sampler=lambda logits: next_token(logits, [generator]))
    beam = genseq_tokens(model, one, GenerationConfig(max_new_tokens=steps // 2, num_beams=BEAMS))[0]
    same_beam = beam == reference_beam_search(model, with_start(one), BEAMS, steps // 2)
    print(f"identical tokens: greedy {same_greedy}; sampled, the reference loop drawing with genseq's "
          f"next_token {sampled == shared[0].tolist()}; beam search {same_beam}")
    print("(the reference's torch.multinomial draws differently from genseq's one-uniform-per-row sampler, "
          "so with it only the speed is compared)")


def speed(args) -> None:
    model, steps, short = make_model(), args.tokens, max(args.tokens // 2, 1)
    prompts = torch.randint(4, VOCAB, (BATCH, PROMPT_LENGTH))
    one = prompts[:1]
    print(f"model: embedding {EMBEDDING}, LSTM {LAYERS} x {HIDDEN}, vocab {VOCAB}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; prompt {PROMPT_LENGTH} tokens; {steps} new tokens "
          f"({short} for the batch and the beams)")
    print(f"this machine: {capabilities.describe('cpu')}")
    check_identical_tokens(model, one, steps)
    sampled, batched = GenerationConfig(max_new_tokens=steps, seed=11), GenerationConfig(max_new_tokens=short, seed=11)
    beam = GenerationConfig(max_new_tokens=short, num_beams=BEAMS)
    single = compare(
        "single stream, sampled", lambda: genseq_tokens(model, one, sampled),
        lambda: reference_sample(model, with_start(one), steps, torch.Generator().manual_seed(11)), steps, args.rounds,
    )
    batch = compare(
        f"{BATCH} streams in a batch, sampled", lambda: genseq_tokens(model, prompts, batched),
        lambda: reference_sample(model, with_start(prompts), short, torch.Generator().manual_seed(11)),
        BATCH * short, args.rounds,
    )
    beams = compare(
        f"beam search, {BEAMS} beams", lambda: genseq_tokens(model, one, beam),
        lambda: reference_beam_search(model, with_start(one), BEAMS, short), short, args.rounds,
    )
    if args.precision:
        precision_table(model, one, prompts, steps, args.rounds, args.bf16)
    print(f"ratios (genseq / reference tokens per second): single {single:.2f}x, batch{BATCH} {batch:.2f}x, "
          f"beam{BEAMS} {beams:.2f}x")


def precision_table(model, one, prompts, steps, rounds, emulated_bf16=False) -> None:
    """Tokens per second of genseq itself in each precision, one stream and a batch (rounds alternate).

    bf16 is left out where this CPU only emulates it (10-50x slower) unless emulated_bf16,
    int8 where this PyTorch lacks fbgemm.
    """
    runnable = {"bf16": capabilities.bf16_decoding_is_faster("cpu") or emulated_bf16, "int8": capabilities.int8_decoding()}
    precisions = [precision for precision in PRECISIONS if runnable.get(precision, True)]
    why = {"bf16": "this CPU only emulates bf16 (--bf16 times it)", "int8": "this PyTorch lacks fbgemm"}
    for precision in sorted(set(PRECISIONS) - set(precisions)):
        print(f"precision {precision}: not timed, {why[precision]}")
    runs = {}
    for precision in precisions:
        for batch, count in ((one, steps), (prompts, max(steps // 2, 1))):
            config = GenerationConfig(max_new_tokens=count, seed=11, precision=precision)
            runs[precision, len(batch)] = (lambda b=batch, c=config: genseq_tokens(model, b, c), len(batch) * count)
    best = {key: math.inf for key in runs}
    for _ in range(rounds):
        for key, (run, _) in runs.items():
            best[key] = min(best[key], seconds(run))
    for precision in precisions:
        single, batch = (runs[precision, size][1] / best[precision, size] for size in (len(one), len(prompts)))
        print(f"precision {precision}: single stream {single:7.0f} tok/s   {len(prompts)} streams {batch:7.0f} tok/s")


# ---- perplexity of each precision ------------------------------------------------------------
def as_streams(tokens: torch.Tensor, streams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream into `streams` contiguous rows: inputs and next-token targets, each (S, L)."""
    length = (len(tokens) - 1) // streams
    return tokens[: streams * length].view(streams, length), tokens[1 : streams * length + 1].view(streams, length)


@torch.no_grad()
def step_perplexity(model, tokens: torch.Tensor, precision: str, streams: int = 32) -> tuple[float, float]:
    """exp(mean NLL) of tokens under the decoding step itself, token by token with the state carried,
    and the step's speed in tokens per second (all streams together, scoring excluded)."""
    step, (inputs, targets) = decoding_step(model, precision), as_streams(tokens, streams)
    state, nll, seconds = model.initial_state(streams), 0.0, 0.0
    for t in range(inputs.size(1)):
        start = time.perf_counter()
        logits, state = step(inputs[:, t], state)  # (S, V)
        seconds += time.perf_counter() - start
        nll += F.cross_entropy(logits.float(), targets[:, t], reduction="sum").item()
    return math.exp(nll / targets.numel()), targets.numel() / seconds


@torch.no_grad()
def forward_perplexity(model, tokens: torch.Tensor, streams: int = 32, window: int = 256) -> float:
    """The same through model.forward (nn.LSTM over windows), the path `genseq eval` takes."""
    (inputs, targets), state, nll = as_streams(tokens, streams), None, 0.0
    for start in range(0, inputs.size(1), window):
        logits, state = model(inputs[:, start : start + window], state)  # (S, W, V)
        nll += F.cross_entropy(logits.flatten(0, 1), targets[:, start : start + window].flatten(), reduction="sum").item()
    return math.exp(nll / targets.numel())


def perplexity(args) -> None:
    from genseq import from_pretrained

    model, tokenizer = from_pretrained(args.perplexity)
    files = sorted(glob.glob(args.text))
    per_file = args.max_tokens // max(len(files), 1)  # every file contributes the same share
    ids: list[int] = []
    for path in files:
        ids += ([tokenizer.eos_id] + tokenizer.encode(open(path, encoding="utf-8").read()))[:per_file]
    tokens = torch.tensor(ids)
    print(f"model {args.perplexity}: {model.num_parameters():,} parameters; text {args.text}: "
          f"{len(files)} files, {len(tokens):,} tokens (the first {per_file:,} of each); {torch.get_num_threads()} threads")
    print(f"model.forward (nn.LSTM), fp32: token perplexity {forward_perplexity(model, tokens):.3f}")
    base = None
    for precision in PRECISIONS:
        value, rate = step_perplexity(model, tokens, precision)
        base = base or value
        print(f"decoding step, {precision}: token perplexity {value:.3f} ({100 * (value / base - 1):+.3f}% vs fp32), "
              f"{rate:.0f} tok/s in 32 streams")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the best of each side counts")
    parser.add_argument("--tokens", type=int, default=200, help="new tokens of one stream (batch and beams: half)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", action="store_true", help="also time genseq in bf16, int8 and auto")
    parser.add_argument("--bf16", action="store_true", help="with --precision: time bf16 even where this CPU only emulates it")
    parser.add_argument("--perplexity", metavar="CHECKPOINT", help="measure each precision's perplexity instead")
    parser.add_argument("--text", help="glob of text files for --perplexity")
    parser.add_argument("--max-tokens", type=int, default=50_000, help="tokens of --text to score")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    perplexity(args) if args.perplexity else speed(args)


if __name__ == "__main__":
    main()
