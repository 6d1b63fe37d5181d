"""The caption metrics papers report: BLEU-1..4, CIDEr-D, ROUGE-L and METEOR, by the COCO caption evaluation's scorers.

The scorers are pycocoevalcap's, the packaged COCO caption evaluation
(github.com/tylin/coco-caption), so figures compare with published ones.
Captions are tokenized by tokenize() (lowercase words, punctuation dropped)
instead of the evaluation's Stanford PTB tokenizer, which runs Java; BLEU,
CIDEr-D and ROUGE-L are then plain Python. METEOR is the evaluation's Java
jar: it is computed where a `java` command runs, and otherwise left out with
a note saying why.

- BLEU-n (Papineni et al. 2002) is corpus-level: clipped n-gram matches and
  n-grams summed over all images, every reference of an image, its closest
  reference length for the brevity penalty. The evaluation computes each
  precision as (matches + 1e-15) / (n-grams + 1e-9), so a corpus without one
  matching 4-gram scores a BLEU-4 of about 1e-4 rather than 0.
- CIDEr-D (Vedantam et al. 2015) is the mean over images of the tf-idf cosine
  similarity of n-grams (n = 1..4), clipped, with a length penalty, times 10.
  Its idf comes from the references of the images scored, so it depends on
  the corpus: one image alone scores 0, and a few images give a rough figure.
- ROUGE-L (Lin 2004) is the mean over images of the longest common
  subsequence F-measure (beta 1.2) against the best-matching reference.
"""

from __future__ import annotations

import re
import shutil
from typing import Sequence

WORD = re.compile(r"\w+(?:['’]\w+)*")
BLEU_ORDERS = 4


def tokenize(text: str) -> list[str]:
    """'A frog, sitting.' -> ['a', 'frog', 'sitting']"""
    return WORD.findall(text.lower())


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> dict:
    """BLEU-1..4 of tokenized hypotheses, each with one or more tokenized references.

    Returns {"bleu1": ..., "bleu4": ..., "length_ratio": hypothesis words / closest reference words}.
    """
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    references_by_image, hypotheses_by_image = _scorer_input(hypotheses, references)
    scorer = BleuScorer(n=BLEU_ORDERS)
    for image, hypothesis in hypotheses_by_image.items():
        scorer += (hypothesis[0], references_by_image[image])
    scores, _ = scorer.compute_score(option="closest")
    bleu = {f"bleu{n}": float(scores[n - 1]) for n in range(1, BLEU_ORDERS + 1)}
    return {**bleu, "length_ratio": scorer.testlen() / scorer.reflen() if scorer.reflen() else 0.0}


def caption_bleu(captions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """corpus_bleu of caption strings against reference caption strings, tokenized with tokenize()."""
    return corpus_bleu([tokenize(c) for c in captions], [[tokenize(r) for r in refs] for refs in references])


def _scorer_input(hypotheses, references) -> tuple[dict, dict]:
    """The COCO scorers' input: {image: [reference strings]}, {image: [hypothesis string]}, words joined by spaces."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    references_by_image = {image: [" ".join(ref) for ref in refs] for image, refs in enumerate(references)}
    return references_by_image, {image: [" ".join(words)] for image, words in enumerate(hypotheses)}


class CaptionScorer:
    """Scores sets of captions against their references; holds METEOR's Java process between sets until closed.

    with CaptionScorer() as score:
        score(captions, references)  # {"bleu1".."bleu4", "cider", "rouge_l", "meteor"}

    Without Java (or with meteor=False) the result has "meteor_skipped", the reason, instead of "meteor".
    """

    def __init__(self, meteor: bool = True):
        self.meteor = None
        self.meteor_skipped = None if meteor else "not asked for"
        if meteor and shutil.which("java") is None:
            self.meteor_skipped = "no Java runtime (java) on PATH"

    def __call__(self, captions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        hypotheses = [tokenize(c) for c in captions]
        tokenized = [[tokenize(r) for r in refs] for refs in references]
        scores = corpus_bleu(hypotheses, tokenized)
        if not hypotheses:
            return {**scores, "cider": 0.0, "rouge_l": 0.0, **self._meteor({}, {})}
        references_by_image, hypotheses_by_image = _scorer_input(hypotheses, tokenized)
        scores["cider"] = float(Cider().compute_score(references_by_image, hypotheses_by_image)[0])
        scores["rouge_l"] = float(Rouge().compute_score(references_by_image, hypotheses_by_image)[0])
        return {**scores, **self._meteor(references_by_image, hypotheses_by_image)}

    def _meteor(self, references_by_image: dict, hypotheses_by_image: dict) -> dict:
        if self.meteor_skipped:
            return {"meteor_skipped": self.meteor_skipped}
        if not hypotheses_by_image:
            return {"meteor": 0.0}
        try:
            if self.meteor is None:
                from pycocoevalcap.meteor.meteor import Meteor

                self.meteor = Meteor()
            return {"meteor": float(self.meteor.compute_score(references_by_image, hypotheses_by_image)[0])}
        except (OSError, ValueError) as error:  # the JVM did not start or died: its output is empty or cut
            self.close()
            self.meteor_skipped = f"the METEOR jar failed ({type(error).__name__}: {error})"
            return {"meteor_skipped": self.meteor_skipped}

    def close(self) -> None:
        """Stop METEOR's Java process, if one runs."""
        if self.meteor is not None:
            process, self.meteor = self.meteor.meteor_p, None
            process.stdin.close()
            process.kill()
            process.wait()

    def __enter__(self) -> "CaptionScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def caption_metrics(captions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True) -> dict:
    """BLEU-1..4, CIDEr-D, ROUGE-L and (where Java runs) METEOR of captions against their references."""
    with CaptionScorer(meteor) as score:
        return score(captions, references)
