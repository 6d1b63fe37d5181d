"""Copy the best model of a training run into the package as the embedded default, weights in fp16.

    python recipes/ship_lm.py runs/default-lm genseq/models/lm
"""

import sys

import torch

from genseq import from_pretrained, save_pretrained
from genseq.checkpoint import read_config


def main(run_dir: str, destination: str) -> None:
    model, tokenizer = from_pretrained(run_dir)
    config = read_config(run_dir)
    save_pretrained(destination, model, tokenizer, dtype=torch.float16,
                    training_config=config.get("training_config"), training=config.get("training"),
                    **({"init": config["init"]} if "init" in config else {}))  # a fine-tune's starting point


if __name__ == "__main__":
    main(*sys.argv[1:3])
