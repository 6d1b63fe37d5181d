"""A reference runner for a genseq ONNX export (`genseq export onnx`): greedy generation, next-word
suggestions and perplexity with onnxruntime, sentencepiece and numpy only, as an app on a device would run it.

    python runner.py EXPORT_DIR "Once upon a time" [--max-new-tokens 40]
    python runner.py EXPORT_DIR "To be or not t" --suggest 5
    python runner.py EXPORT_DIR --perplexity FILE

It needs no torch and no genseq: everything it knows about the model is in the
export's config.json. The model is read one token at a time through its step,
ids (B,) and state in, logits (B, V) and state out, starting from a zero state
and the config's start_id, exactly as genseq's engine starts a prompt.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import sentencepiece as spm

WORD_START = "▁"  # SentencePiece's marker for a piece that begins with a space


class ExportedModel:
    """The step of an export directory, its tokenizer and its config."""

    def __init__(self, directory: str | Path, threads: int = 0):
        directory = Path(directory)
        self.config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's choice
        model_file = str(directory / self.config["files"]["model"])
        self.session = ort.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])
        self.sp = spm.SentencePieceProcessor(model_file=str(directory / self.config["files"]["tokenizer"]))
        self.special = self.config["special_ids"]

    # ---- the step ------------------------------------------------------------------------------
    def initial_state(self, batch: int) -> list[np.ndarray]:
        """One zero tensor (layers, batch, hidden) per state entry."""
        return [np.zeros((entry["shape"][0], batch, entry["shape"][1]), np.float32) for entry in self.config["state"]]

    def step(self, ids, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """ids (B,) -> (logits (B, V), the state after reading them)."""
        feeds = {"ids": np.asarray(ids, dtype=np.int64)}
        feeds.update({entry["input"]: tensor for entry, tensor in zip(self.config["state"], state)})
        logits, *state = self.session.run(self.config["outputs"], feeds)
        return logits, state

    def read(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each prompt after the start token, one at a time -> (the logits after each (B, V), their states)."""
        rows = [self._read_one(ids) for ids in prompts]
        logits = np.concatenate([row[0] for row in rows])
        return logits, [np.concatenate([row[1][i] for row in rows], axis=1) for i in range(len(rows[0][1]))]

    def _read_one(self, ids: list[int]):
        state = self.initial_state(1)
        for token in [self.config["start_id"], *ids]:
            logits, state = self.step([token], state)
        return logits, state

    # ---- text ----------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """As genseq's tokenizer: each line on its own, lines joined by the newline byte piece."""
        ids: list[int] = []
        for index, line in enumerate(text.split("\n")):
            if index:
                ids.append(self.special["newline"])
            if line:
                ids.extend(self.sp.encode(line))
        return ids

    def decode(self, ids: list[int]) -> str:
        lines: list[list[int]] = [[]]
        skipped = {self.special["pad"], self.special["bos"], self.special["eos"]}
        for token in ids:
            if token == self.special["newline"]:
                lines.append([])
            elif token not in skipped:
                lines[-1].append(int(token))
        return "\n".join(self.sp.decode(line) for line in lines)

    # ---- what an app does with it --------------------------------------------------------------
    def greedy_ids(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Each prompt's greedy continuation, decoded as one batch; it ends after EOS (included) or max_new_tokens."""
        logits, state = self.read(prompts)
        generated: list[list[int]] = [[] for _ in prompts]
        live = list(range(len(prompts)))  # the rows still generating, in the order of the batch
        for count in range(1, max_new_tokens + 1):
            tokens = logits.argmax(-1)
            for row, token in zip(live, tokens.tolist()):
                generated[row].append(token)
            keep = [i for i, token in enumerate(tokens.tolist()) if token != self.special["eos"]]
            live = [live[i] for i in keep]
            if not live or count == max_new_tokens:
                break
            logits, state = self.step(tokens[keep], [tensor[:, keep] for tensor in state])
        return generated

    def greedy(self, prompt: str, max_new_tokens: int = 40) -> str:
        return self.decode(self.greedy_ids([self.encode(prompt)], max_new_tokens)[0])

    def perplexity(self, text: str) -> float:
        """exp of the mean negative log-likelihood of text's tokens, each given the ones before it."""
        ids = self.encode(text)
        if not ids:
            raise ValueError("the text is empty, so it has no perplexity")
        state, total = self.initial_state(1), 0.0
        for previous, token in zip([self.config["start_id"], *ids], ids):
            logits, state = self.step([previous], state)
            total -= log_softmax(logits[0])[token]
        return math.exp(total / len(ids))

    def suggest(self, prompt: str, k: int = 5) -> list[dict]:
        """The k most likely next words after prompt; see NextWords."""
        return self.next_words.suggest(prompt, k)

    @functools.cached_property
    def next_words(self) -> NextWords:
        return NextWords(self)  # its masks over the vocabulary are made once


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# ---- next-word suggestions ---------------------------------------------------------------------
class NextWords:
    """The k most likely next whole words, as genseq's completion task suggests them.

    A word spans one or more pieces, so continuations are expanded best-first
    over pieces, in batches, until a word boundary. A word's probability is that
    of its pieces followed by a boundary (a piece that starts a new word,
    punctuation, a newline or EOS), summed over its spellings. A prompt that
    ends mid-word ("To be or not t") gets completions of that word.
    """

    def __init__(self, model: ExportedModel, max_expansions: int = 200, batch_size: int = 16, max_candidates: int = 64):
        self.model, self.max_expansions = model, max_expansions
        self.batch_size, self.max_candidates = batch_size, max_candidates
        sp, special = model.sp, model.special
        self.texts = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        self.special_ids = {i for i, text in enumerate(self.texts) if text.startswith("<") and text.endswith(">")}
        ids, boundary = range(len(self.texts)), {special["eos"], special["newline"]}
        # (V,) booleans: pieces that start a word, continue one, and end the word before them
        self.starts = np.array([self._starts_word(i) for i in ids])
        self.continues = np.array([self._continues_word(i) for i in ids])
        self.ends = np.array([i in boundary or (i not in self.special_ids and not self.continues[i]) for i in ids])

    def _continues_word(self, token: int) -> bool:
        return token not in self.special_ids and is_word_char(self.texts[token][:1])

    def _starts_word(self, token: int) -> bool:
        text = self.texts[token]
        return (token not in self.special_ids and text.startswith(WORD_START)
                and (text == WORD_START or is_word_char(text[1:2])))

    def suggest(self, prompt: str, k: int) -> list[dict]:
        context, partial = split_prompt(prompt)
        suggestions = self.search(context, partial, k)
        if partial and suggestions and suggestions[0]["word"] == partial:  # the typed word is complete
            suggestions = self.search(prompt.rstrip(" \t"), "", k)
        return suggestions

    def search(self, context: str, partial: str, k: int) -> list[dict]:
        logits, state = self.model.read([self.model.encode(context)])
        words: dict[str, float] = {}
        frontier: list[tuple[float, str, tuple[int, ...]]] = []  # (-log p, word so far, its pieces)
        states = {(): state}
        self._extend((0.0, "", ()), log_softmax(logits[0]), partial, words, frontier)
        expansions = 0
        while frontier and expansions < self.max_expansions:
            best = sorted(words.values(), reverse=True)
            if len(best) >= k and best[k - 1] >= sum(math.exp(-entry[0]) for entry in frontier):
                break
            batch = [heapq.heappop(frontier) for _ in range(min(self.batch_size, len(frontier)))]
            parents = [states[tokens[:-1]] for _, _, tokens in batch]
            parent_state = [np.concatenate([parent[i] for parent in parents], axis=1) for i in range(len(state))]
            logits, new_state = self.model.step([tokens[-1] for _, _, tokens in batch], parent_state)
            for row, prefix in enumerate(batch):
                states[prefix[2]] = [tensor[:, row : row + 1] for tensor in new_state]
                self._extend(prefix, log_softmax(logits[row]), partial, words, frontier)
            expansions += len(batch)
        ranked = sorted(words.items(), key=lambda item: -item[1])[:k]
        return [{"word": word, "prob": prob} for word, prob in ranked]

    def _extend(self, prefix, log_probs: np.ndarray, partial: str, words: dict, frontier: list) -> None:
        """Close prefix as a word (times the boundary's probability) and push its one-piece extensions."""
        neg_logprob, word, tokens = prefix
        if word and word.startswith(partial):
            ending = np.logaddexp.reduce(log_probs[self.ends])
            words[word] = words.get(word, 0.0) + math.exp(-neg_logprob + ending)
        allowed = self.continues if tokens else self.starts
        candidates = np.flatnonzero(allowed)
        top = candidates[np.argsort(-log_probs[candidates], kind="stable")[: self.max_candidates]]
        for token in top.tolist():
            piece = self.texts[token] if tokens else self.texts[token][len(WORD_START):]
            extended = word + piece
            if extended.startswith(partial) or partial.startswith(extended):
                heapq.heappush(frontier, (neg_logprob - log_probs[token], extended, tokens + (token,)))


def is_word_char(char: str) -> bool:
    return bool(char) and (char.isalnum() or char in "'’-")


def split_prompt(prompt: str) -> tuple[str, str]:
    """(context, partial word): 'To be or not t' -> ('To be or not', 't'); a trailing space -> partial ''."""
    stripped = prompt.rstrip(" \t")
    if stripped != prompt or not stripped or not is_word_char(stripped[-1]):
        return stripped, ""
    start = len(stripped)
    while start > 0 and is_word_char(stripped[start - 1]):
        start -= 1
    return stripped[:start].rstrip(" \t"), stripped[start:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a genseq ONNX export with onnxruntime (no torch).")
    parser.add_argument("export", help="a directory written by `genseq export onnx`")
    parser.add_argument("prompt", nargs="?", default="", help="the text to continue or to suggest the next word after")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--suggest", type=int, default=0, metavar="K", help="list the K most likely next words instead")
    parser.add_argument("--perplexity", metavar="FILE",
                        help="print the model's perplexity on a UTF-8 text file instead")
    args = parser.parse_args(argv)
    model = ExportedModel(args.export)
    if args.perplexity:
        print(f"perplexity {model.perplexity(Path(args.perplexity).read_text(encoding='utf-8')):.3f}")
    elif args.suggest:
        for suggestion in model.suggest(args.prompt, args.suggest):
            print(f"{suggestion['prob']:.3f}  {suggestion['word']}")
    else:
        print(args.prompt + model.greedy(args.prompt, args.max_new_tokens))


if __name__ == "__main__":
    main()
