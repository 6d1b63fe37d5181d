#!/usr/bin/env bash
# Trains the default language model shipped in genseq/models/lm from ../shared/data, then the
# word-level baseline it is compared with, on the same data for the same 75-minute budget
# (see ../shared/data/README.md for where each corpus comes from and how to obtain it).
# Usage: recipes/default-lm.sh [RUN_DIR]   (rerun the same command to resume after an interruption)
# Then: python recipes/ship_lm.py RUN_DIR genseq/models/lm
set -euo pipefail
DATA=${DATA:-../shared/data/text}
RUN=${1:-runs/default-lm}
args=(--data "$DATA/*/train/*.txt" --valid "$DATA/*/valid/*.txt")
export OMP_NUM_THREADS=1  # one core, as measured
if [ -d "$RUN/last" ]; then
  genseq train lm "${args[@]}" --resume "$RUN" --max-time 75m --eval-every 500 --checkpoint-minutes 5
else
  genseq train lm "${args[@]}" --out "$RUN" \
    --vocab-size 8000 --embedding-size 256 --hidden-size 512 --layers 2 --projection-size 256 --tie-weights \
    --embedding-dropout 0.1 --layer-dropout 0.2 --output-dropout 0.2 \
    --batch-size 32 --bptt 64 --lr 3e-3 --warmup-steps 200 --schedule cosine --clip-grad-norm 1.0 \
    --max-time 75m --eval-every 500 --checkpoint-minutes 5 --patience 0 --seed 0
fi
for corpus in "$DATA"/*/; do
  echo "$(basename "$corpus") $(genseq eval lm --model "$RUN" --data "$corpus/valid" --json)"
done
# The baseline: pytorch/examples' word_language_model recipe (see recipes/word_baseline.py).
if [ ! -f "$RUN-word-baseline/report.json" ]; then
  python recipes/word_baseline.py --data "$DATA" --out "$RUN-word-baseline" --max-time 75m --threads 1
fi
cat "$RUN-word-baseline/report.json"
