"""Training throughput: genseq's training step against a plain PyTorch loop.

Both train the same shape of model (embedding 256 -> 2-layer LSTM 512 -> linear
to 8000, no dropout) with cross-entropy and AdamW on the same random batches
(32 x 64 tokens), in the same process, in alternating rounds. genseq's step
also carries and detaches the state, schedules the learning rate, checks the
loss is finite and clips the gradient norm. The last line is the ratio
genseq / reference of tokens per second (medians over rounds).

With --precision bf16 genseq's step runs under bf16 autocast while the
reference stays in fp32, so the ratio is the speed-up of mixed precision (on
CPUs with AVX512-BF16 or AMX, and on CUDA).

    python benchmarks/bench_train.py [--rounds 5] [--steps 10] [--threads N] [--precision bf16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genseq import LanguageModel, ModelConfig, Tokenizer
from genseq.data import TokenStream
from genseq.train import TrainConfig, Trainer

VOCAB, EMBEDDING, HIDDEN, LAYERS, BATCH, BPTT = 8000, 256, 512, 2, 32, 64


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBEDDING)
        self.lstm = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, batch_first=True)
        self.output = nn.Linear(HIDDEN, VOCAB)

    def forward(self, ids, state):
        out, state = self.lstm(self.embedding(ids), state)
        return self.output(out), state


def reference_steps(model, optimizer, batches, steps, state):
    for inputs, targets in batches[:steps]:
        state = tuple(s.detach() for s in state)
        logits, state = model(inputs, state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
    return state


def genseq_steps(trainer, batches, steps):
    for batch in batches[:steps]:
        trainer.train_step(batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="genseq's side only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens = torch.randint(4, VOCAB, (BATCH, args.steps * BPTT + 1))
    batches = [(tokens[:, i * BPTT : (i + 1) * BPTT], tokens[:, i * BPTT + 1 : (i + 1) * BPTT + 1]) for i in range(args.steps)]

    config = ModelConfig(vocab_size=VOCAB, embedding_size=EMBEDDING, hidden_size=HIDDEN, num_layers=LAYERS,
                         embedding_dropout=0.0, layer_dropout=0.0, output_dropout=0.0)
    tokenizer = Tokenizer.train((f"w{i} w{i % 7} w{i % 13}" for i in range(3000)), vocab_size=272)
    stream = TokenStream(np.zeros(BATCH * BPTT * 2, dtype=np.uint16), 0, 0)
    trainer = Trainer(LanguageModel(config), tokenizer, stream, stream,
                      TrainConfig(batch_size=BATCH, bptt=BPTT, warmup_steps=0, progress=False,
                                  device="cpu", precision=args.precision), tempfile.mkdtemp())
    reference = Reference()
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=3e-3)
    reference_state = tuple(torch.zeros(LAYERS, BATCH, HIDDEN) for _ in range(2))

    genseq_steps(trainer, batches, 2)  # warm-up: allocator, optimizer state
    reference_state = reference_steps(reference, reference_optimizer, batches, 2, reference_state)
    rates = {"genseq": [], "reference": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        genseq_steps(trainer, batches, args.steps)
        rates["genseq"].append(BATCH * BPTT * args.steps / (time.perf_counter() - start))
        start = time.perf_counter()
        reference_state = reference_steps(reference, reference_optimizer, batches, args.steps, reference_state)
        rates["reference"].append(BATCH * BPTT * args.steps / (time.perf_counter() - start))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, genseq in {args.precision}, batch {BATCH} x bptt {BPTT}, "
          f"emb {EMBEDDING} / hidden {HIDDEN} / {LAYERS} layers / vocab {VOCAB}")
    for name, values in rates.items():
        print(f"{name:>10}: {statistics.median(values):8.0f} tokens/s  (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    print(f"ratio genseq/reference: {statistics.median(rates['genseq']) / statistics.median(rates['reference']):.3f}")


if __name__ == "__main__":
    main()
