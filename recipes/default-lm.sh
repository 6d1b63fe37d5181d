#!/usr/bin/env bash
# Trains the default language model shipped in genseq/models/lm from ../shared/data
# (see ../shared/data/README.md for where each corpus comes from).
# Usage: recipes/default-lm.sh [RUN_DIR]   (rerun the same command to resume after an interruption)
set -euo pipefail
DATA=${DATA:-../shared/data/text}
RUN=${1:-runs/default-lm}
args=(--data "$DATA/*/train/*.txt" --valid "$DATA/*/valid/*.txt")
if [ -d "$RUN/last" ]; then
  exec genseq train lm "${args[@]}" --resume "$RUN" --max-time 75m --eval-every 500 --checkpoint-minutes 5
fi
exec genseq train lm "${args[@]}" --out "$RUN" \
  --vocab-size 8000 --embedding-size 256 --hidden-size 512 --layers 2 --projection-size 256 --tie-weights \
  --embedding-dropout 0.1 --layer-dropout 0.2 --output-dropout 0.2 \
  --batch-size 32 --bptt 64 --lr 3e-3 --warmup-steps 200 --schedule cosine --clip-grad-norm 1.0 \
  --max-time 75m --eval-every 500 --checkpoint-minutes 5 --patience 0 --seed 0
