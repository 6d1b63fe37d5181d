"""Word-level LSTM baseline in the manner of pytorch/examples word_language_model.

    python recipes/word_baseline.py --data '../shared/data/text' --out runs/word-baseline --max-time 100m

The recipe of https://github.com/pytorch/examples/tree/main/word_language_model
(main.py defaults with --tied): a vocabulary of whitespace-separated words plus
<eos> at each line end, built from every split as that script does; embedding
and 2 LSTM layers of 200 with tied input and output embeddings, dropout 0.2,
weights uniform in [-0.1, 0.1]; plain SGD with lr 20 divided by 4 whenever the
validation loss stops improving, gradient norm clipped at 0.25, truncated
backpropagation over 35 steps, batch 20 (10 for evaluation). Only the clock
differs: training stops after --max-time, and the validation loss that drives
the annealing is measured every --eval-minutes on the first --eval-words
words of the validation text instead of once per epoch, so the baseline
anneals within a budget shorter than one epoch.

The report gives, per corpus, the word perplexity over the valid split: the
exp of the total NLL of the text (words and line ends) divided by its
whitespace-separated word count, the same quantity `genseq eval completion` reports as
word_perplexity, so the two models are scored on the same units.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F

from genseq.checkpoint import atomic_write

EOS = "<eos>"


class WordLSTM(nn.Module):
    def __init__(self, vocab_size: int, size: int = 200, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, size)
        self.rnn = nn.LSTM(size, size, layers, dropout=dropout)
        self.decoder = nn.Linear(size, vocab_size)
        self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        self.layers, self.size = layers, size

    def forward(self, tokens: torch.Tensor, state):
        output, state = self.rnn(self.drop(self.encoder(tokens)), state)
        return self.decoder(self.drop(output)), state

    def initial_state(self, batch: int):
        zeros = torch.zeros(self.layers, batch, self.size)
        return zeros, zeros.clone()


def read_words(pattern: str) -> list[list[str]]:
    """One list per file, in sorted path order: each line's words followed by <eos>."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"No files match {pattern}.")
    documents = []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            documents.append([word for line in handle for word in line.split() + [EOS]])
    return documents


def count_words(pattern: str) -> int:
    return sum(len(line.split()) for path in glob.glob(pattern) for line in open(path, encoding="utf-8"))


def batchify(ids: torch.Tensor, batch: int) -> torch.Tensor:
    steps = ids.numel() // batch
    return ids[: steps * batch].view(batch, steps).t().contiguous()  # (steps, batch)


def detach(state):
    return tuple(part.detach() for part in state)


@torch.no_grad()
def total_nll(model: WordLSTM, ids: torch.Tensor, bptt: int = 35, batch: int = 10) -> tuple[float, int]:
    model.eval()
    data = batchify(ids, batch)
    state, nll = model.initial_state(batch), 0.0
    for start in range(0, data.size(0) - 1, bptt):
        length = min(bptt, data.size(0) - 1 - start)
        logits, state = model(data[start : start + length], state)
        nll += F.cross_entropy(logits.view(-1, logits.size(-1)), data[start + 1 : start + 1 + length].reshape(-1),
                               reduction="sum").item()
    return nll, (data.size(0) - 1) * batch


def parse_minutes(text: str) -> float:
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/text", help="folder with CORPUS/{train,valid}/*.txt")
    parser.add_argument("--out", default="runs/word-baseline")
    parser.add_argument("--max-time", default="100m", help="training wall-clock budget, e.g. 75m or 1.5h")
    parser.add_argument("--eval-minutes", type=float, default=10.0)
    parser.add_argument("--eval-words", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1111)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    corpora = sorted(os.path.basename(path) for path in glob.glob(os.path.join(args.data, "*")) if os.path.isdir(path))
    train_docs = read_words(os.path.join(args.data, "*", "train", "*.txt"))
    valid_docs = {name: read_words(os.path.join(args.data, name, "valid", "*.txt")) for name in corpora}
    vocabulary = {EOS: 0}
    for document in train_docs + [doc for docs in valid_docs.values() for doc in docs]:
        for word in document:
            vocabulary.setdefault(word, len(vocabulary))

    def ids(documents):
        return torch.tensor([vocabulary[word] for document in documents for word in document], dtype=torch.long)

    train = batchify(ids(train_docs), 20)
    valid = {name: ids(docs) for name, docs in valid_docs.items()}
    probe = torch.cat([ids_[: args.eval_words // len(valid)] for ids_ in valid.values()])
    print(f"vocabulary {len(vocabulary)} words, train {train.numel()} tokens, valid {sum(map(len, valid.values()))}")

    model = WordLSTM(len(vocabulary))
    lr, bptt, clip = 20.0, 35, 0.25
    budget = parse_minutes(args.max_time) * 60
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")
    best, best_state = math.inf, None
    trained, steps, epoch, tokens = 0.0, 0, 0, 0
    next_eval = args.eval_minutes * 60

    def validate():
        nonlocal best, best_state, lr
        nll, count = total_nll(model, probe)
        loss = nll / count
        if loss < best:
            best, best_state = loss, {k: v.clone() for k, v in model.state_dict().items()}
        else:
            lr /= 4.0
        record = {"step": steps, "time": round(trained, 1), "split": "valid", "loss": loss, "ppl": math.exp(loss), "lr": lr}
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        print(record, flush=True)

    while trained < budget:
        epoch += 1
        state = model.initial_state(20)
        for start in range(0, train.size(0) - 1, bptt):
            if trained >= budget:
                break
            began = time.perf_counter()
            model.train()
            length = min(bptt, train.size(0) - 1 - start)
            state = detach(state)
            model.zero_grad()
            logits, state = model(train[start : start + length], state)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), train[start + 1 : start + 1 + length].reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            trained += time.perf_counter() - began
            steps += 1
            tokens += length * 20
            if steps % 50 == 0:
                record = {"step": steps, "epoch": epoch, "time": round(trained, 1), "split": "train",
                          "loss": loss.item(), "lr": lr, "tokens_per_s": tokens / trained}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if trained >= next_eval:
                validate()
                next_eval += args.eval_minutes * 60
    validate()
    model.load_state_dict(best_state)

    report = {"vocabulary": len(vocabulary), "train_tokens_seen": tokens, "train_seconds": round(trained, 1),
              "epochs": tokens / train.numel(), "corpora": {}}
    for name in corpora:
        nll, count = total_nll(model, valid[name], batch=1)
        words = count_words(os.path.join(args.data, name, "valid", "*.txt"))
        report["corpora"][name] = {"tokens": count, "words": words, "nll": nll,
                                   "token_perplexity": math.exp(nll / count), "word_perplexity": math.exp(nll / words)}
    atomic_write(os.path.join(args.out, "report.json"), json.dumps(report, indent=2).encode())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
