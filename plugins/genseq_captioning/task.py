"""The `captioning` task: image in, caption out, with its log-probability, the ranked beams, attention maps and
each word's confidence.

A picture unlike the model's training images (novelty.py: its features
far from every prototype of them) gets a notice that it is unfamiliar, and a
caption whose mean log-probability per token falls below the model's
calibrated threshold (confidence.py) one that it is a guess: one sentence per
reason. Neither test catches every wrong caption, so no notice is no guarantee.

Images arrive as paths (the CLI) or PIL images (the web app). A file that
cannot be read gives that item {"image", "error"} with one sentence; the
other images of the batch are still captioned. Every sampling option of the
generation engine is an option here; temperature 0 (the default) is greedy.
"""

from __future__ import annotations

import time

from genseq.tasks import Example, Input, Option, Output, Task, generation_config, generation_options


class CaptioningTask(Task):
    name = "captioning"
    description = ("Give it a picture and it writes a short caption, showing where it looked for each word. "
                   "It learned from emoji and clip-art stamps, alone or two or three together on a plain or drawn "
                   "background (grass, sand, water, wood, bricks), never from photographs: its caption of a photograph "
                   "is a guess, even when not flagged as one.")
    inputs = (Input("image", "image", "an image file (any format Pillow reads) or a PIL image", label="picture"),)
    outputs = (
        Output("caption", "text", "the best caption"),
        Output("captions", "ranked", "every beam's caption with its average probability per token (with num_beams "
               "above 1)", label="beams", advanced=True),
        Output("attention", "image", "the image with one attention heat map per word (with the attention option)"),
        Output("confidence", "table", "each word of the caption with the model's average probability of its tokens "
               "(with the word_confidence option)", label="word confidence"),
        Output("mean_logprob", "number", "the caption's mean log-probability per token: near 0 is sure, far below "
               "the model's threshold is a guess", label="confidence (mean log-probability per token)", advanced=True),
    )
    options = (
        # Greedy unless the caller samples (beam search sets a default temperature aside), and a caption per beam.
        *generation_options(without=("stop", "banned_ids"), primary=("num_beams", "max_new_tokens"), max_new_tokens=40,
                            temperature=0.0, num_return_sequences=None),
        Option("attention", False, "return the attention-map picture of each image", app_default=True, advanced=True,
               label="show where it looked"),
        Option("word_confidence", False, "list each word of the caption with the model's probability of it",
               app_default=True, advanced=True, label="show word confidence"),
        Option("attention_map", None, "write a PNG of the attention maps here (one row per image)", type=str,
               server_side=True),
    )
    examples = tuple(Example(label, {"image": f"examples/{name}.png"}) for label, name in (
        # Composed scenes of the test split (genseq_captioning.scenes) that the shipped captioner captions right,
        # the first a pair it never saw together: its attention map shows it looking at each object as it names it.
        ("phone sign and button (a scene)", "scene_phones_button"), ("roller coaster on sand (a scene)", "scene_roller_coaster"),
        ("woman on wood (a scene)", "scene_woman_wood"),
        ("grinning face", "emoji_1f600"), ("cat face", "emoji_1f431"), ("shark", "shark"), ("flamingo", "flamingo"),
        ("dog face", "dog_face"), ("cactus", "cactus"), ("red apple", "red_apple"), ("woman biking", "woman_biking")))
    model_kinds = ("captioner",)
    commands = ".cli"  # genseq train / eval captioning
    low_confidence_below: float | None = None  # the loaded model's calibrated threshold (confidence.py), if it has one
    novelty = None  # the loaded model's novelty.Reference of its training images, if it has one

    @classmethod
    def default_model_dir(cls):
        from .captioner import default_dir

        return str(default_dir())

    def load(self, model_path):
        from genseq.checkpoint import resolve

        from .captioner import default_dir, load_captioner
        from .confidence import read_threshold
        from .novelty import read_reference

        self.model_name = str(model_path or default_dir())
        captioner = load_captioner(model_path, device=self.device)
        self.low_confidence_below = read_threshold(resolve(self.model_name))
        self.novelty = read_reference(resolve(self.model_name), captioner.encoder)
        return captioner

    def predict(self, captioner, batch, options):
        from .images import load_batch, source_name

        encoder_config = captioner.encoder.config
        loaded = load_batch([item["image"] for item in batch], encoder_config.image_size, encoder_config.mean, encoder_config.std)
        results: list[dict] = [{"image": source_name(item["image"], i)} for i, item in enumerate(batch)]
        for index, error in loaded.errors.items():
            results[index]["error"] = error
        if not loaded.rows:
            return results
        config, seed = generation_config(options)
        start = time.perf_counter()
        features = captioner.encode_images(loaded.pixels)  # (G, C, h, w)
        captions = captioner.generate(features, config)
        weights = captioner.attention(features, [ranked[0].tokens for ranked in captions])
        familiarity = self.novelty.scores(features) if self.novelty else [None] * len(captions)
        seconds = round(time.perf_counter() - start, 4)
        rows = []
        for position, index in enumerate(loaded.rows):
            result, row = self._result(captioner, captions[position], weights[position], loaded.squares[position])
            results[index].update(result, seed=seed, seconds=seconds)
            results[index].update(self._honesty(result["mean_logprob"], familiarity[position]))
            rows.append(row)
            if options.get("word_confidence"):
                results[index]["confidence"] = _word_confidence(captioner, features[position], captions[position][0])
        self._pictures(captioner, results, loaded.rows, rows, options)
        return results

    def to_json(self, batch, results):
        keys = ("image", "caption", "logprob", "mean_logprob", "familiarity", "notice", "error")
        return [{key: result[key] for key in keys if key in result} for result in results]

    # ---- helpers -------------------------------------------------------------------
    def _honesty(self, mean_logprob: float, familiarity: float | None) -> dict:
        """The picture's familiarity (with a novelty reference) and a notice of one sentence per reason for doubt."""
        from .confidence import low_confidence_notice

        notices = [low_confidence_notice(mean_logprob, self.low_confidence_below)]
        honesty = {}
        if familiarity is not None:
            honesty["familiarity"] = round(familiarity, 4)
            notices.insert(0, self.novelty.notice(familiarity))
        notice = " ".join(filter(None, notices))
        return honesty | ({"notice": notice} if notice else {})

    @staticmethod
    def _result(captioner, ranked, weights, square):
        """One image's result and its attention-map row."""
        import math

        from .attention_map import AttentionRow, words_and_weights
        from .confidence import mean_logprob

        best = ranked[0]
        tokens = best.tokens[:-1] if best.finish_reason == "eos" else best.tokens
        words, grids = words_and_weights([captioner.tokenizer.id_to_piece(t) for t in tokens], weights[: len(tokens)])
        result = {
            "caption": best.text,
            "logprob": best.logprob,
            "mean_logprob": round(mean_logprob(best), 4),
            "finish_reason": best.finish_reason,
            # per token, so that a longer caption is not made to look less likely than a short one
            "captions": [{"label": c.text, "prob": math.exp(mean_logprob(c))} for c in ranked],
            "words": words,
            "attention_weights": grids.round(4).tolist(),  # (W, h, w): where the decoder looked for each word
        }
        return result, AttentionRow(square, best.text, words, grids)

    @staticmethod
    def _pictures(captioner, results, indices, rows, options):
        if not (options["attention"] or options["attention_map"]):
            return
        from genseq.errors import ConfigError

        from .attention_map import render

        if not captioner.decoder.config.attention:
            raise ConfigError("this captioner has no attention (a Show and Tell model), so it has no attention maps")
        if options["attention_map"]:
            _write_png(options["attention_map"], render(rows))
        if options["attention"]:
            import io

            from PIL import Image

            for index, row in zip(indices, rows):
                results[index]["attention"] = Image.open(io.BytesIO(render([row])))


def _word_confidence(captioner, features, best) -> list[dict]:
    """Each word of the caption with the mean of the decoder's probabilities of its tokens, read by teacher forcing
    on the image's features (C, h, w)."""
    import torch

    from .attention_map import words_and_weights

    tokens = best.tokens[:-1] if best.finish_reason == "eos" else best.tokens
    inputs = torch.tensor([[captioner.tokenizer.bos_id, *tokens[:-1]]], device=captioner.device)  # (1, T)
    with torch.inference_mode():
        logits, _ = captioner.decoder(features[None].to(captioner.device).float(), inputs)  # (1, T, V)
    chosen = torch.tensor(tokens, device=logits.device)[:, None]
    probabilities = logits[0].float().softmax(-1).gather(1, chosen)[:, 0].cpu()  # (T,)
    pieces = [captioner.tokenizer.id_to_piece(token) for token in tokens]
    words, means = words_and_weights(pieces, probabilities.reshape(-1, 1, 1))  # a word's pieces share their mean
    return [{"word": word, "confidence": round(float(mean), 4)} for word, mean in zip(words, means.reshape(-1))]


def _write_png(path: str, data: bytes) -> None:
    from pathlib import Path

    from genseq.errors import ConfigError

    try:
        Path(path).write_bytes(data)
    except OSError as error:
        raise ConfigError(f"cannot write the attention map to {path}: {error.strerror}") from None
