"""The `captioning` task: image in, caption out, with its log-probability, the ranked beams and attention maps.

Images arrive as paths (the CLI) or PIL images (the web app). A file that
cannot be read gives that item {"image", "error"} with one sentence; the
other images of the batch are still captioned. Every sampling option of the
generation engine is an option here; temperature 0 (the default) is greedy.
"""

from __future__ import annotations

import time

from genseq.tasks import Input, Option, Output, Task, generation_config, generation_options


class CaptioningTask(Task):
    name = "captioning"
    description = "Describe an image in words: a CNN encoder and an LSTM decoder with attention."
    inputs = (Input("image", "image", "an image file (any format Pillow reads) or a PIL image"),)
    outputs = (
        Output("caption", "text", "the best caption"),
        Output("captions", "ranked", "every beam's caption with its probability (with num_beams above 1)"),
        Output("attention", "image", "the image with one attention heat map per word (with the attention option)"),
    )
    options = (
        # Greedy unless the caller samples (beam search sets a default temperature aside), and a caption per beam.
        *generation_options(without=("stop", "banned_ids"), max_new_tokens=40, temperature=0.0, num_return_sequences=None),
        Option("attention", False, "return the attention-map picture of each image", app_default=True),
        Option("attention_map", None, "write a PNG of the attention maps here (one row per image)", type=str,
               server_side=True),
    )
    examples = tuple({"image": f"examples/{name}.png"} for name in (
        "shark", "flamingo", "dog_face", "cactus", "red_apple", "woman_biking", "emoji_1f600", "emoji_1f431"))
    model_kinds = ("captioner",)
    commands = ".cli"  # genseq train / eval captioning

    def load(self, model_path):
        from .captioner import default_dir, load_captioner

        self.model_name = str(model_path or default_dir())
        return load_captioner(model_path, device=self.device)

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
        seconds = round(time.perf_counter() - start, 4)
        rows = []
        for position, index in enumerate(loaded.rows):
            result, row = self._result(captioner, captions[position], weights[position], loaded.squares[position])
            results[index].update(result, seed=seed, seconds=seconds)
            rows.append(row)
        self._pictures(captioner, results, loaded.rows, rows, options)
        return results

    def to_json(self, batch, results):
        keys = ("image", "caption", "logprob", "error")
        return [{key: result[key] for key in keys if key in result} for result in results]

    # ---- helpers -------------------------------------------------------------------
    @staticmethod
    def _result(captioner, ranked, weights, square):
        """One image's result and its attention-map row."""
        import math

        from .attention_map import AttentionRow, words_and_weights

        best = ranked[0]
        tokens = best.tokens[:-1] if best.finish_reason == "eos" else best.tokens
        words, grids = words_and_weights([captioner.tokenizer.id_to_piece(t) for t in tokens], weights[: len(tokens)])
        result = {
            "caption": best.text,
            "logprob": best.logprob,
            "finish_reason": best.finish_reason,
            "captions": [{"label": c.text, "prob": math.exp(c.logprob)} for c in ranked],
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


def _write_png(path: str, data: bytes) -> None:
    from pathlib import Path

    from genseq.errors import ConfigError

    try:
        Path(path).write_bytes(data)
    except OSError as error:
        raise ConfigError(f"cannot write the attention map to {path}: {error.strerror}") from None
