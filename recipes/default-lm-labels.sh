#!/usr/bin/env bash
# Fine-tunes the default language model trained by recipes/default-lm.sh on the same data with the four corpora as
# style labels (each file labelled by its corpus folder): the embedded default. The tokenizer gains one control
# symbol per corpus after its 8,000 pieces (every text keeps its ids) and the model one embedding row each. Each
# batch holds 32 contiguous rows and 16 style rows, which read a label as a prompt does (docs/training.md, "Style
# labels"). The shipped model is 75 minutes of two cores from the fp16 copy of that run embedded before it
# (genseq/models/lm as of commit 9b987da, whose weights' SHA-256 config.json's "init" records).
# Usage: recipes/default-lm-labels.sh [RUN_DIR]   (rerun the same command to resume after an interruption)
#        BUDGET=90m LR=2e-3 STYLE_ROWS=8 recipes/default-lm-labels.sh RUN   another budget, peak rate or style rows
#        INIT=DIR recipes/default-lm-labels.sh RUN   from another checkpoint than runs/default-lm
# Then: python recipes/ship_lm.py RUN_DIR genseq/models/lm
set -euo pipefail
DATA=${DATA:-../shared/data/text}
RUN=${1:-runs/default-lm-labels}
BUDGET=${BUDGET:-75m}
LR=${LR:-1e-3}
STYLE_ROWS=${STYLE_ROWS:-16}
INIT=${INIT:-runs/default-lm}
CORPORA=(austen mobydick shakespeare sotu)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # two cores

# The default's own batch and window; a learning rate of a third of its peak (LR), decayed over the budget, moves
# the weights towards the labels without undoing what they know; validation on the four valid splits (labelled).
args=(--data "$DATA/*/train/*.txt" --valid "$DATA/*/valid/*.txt" --labels-from folders --max-time "$BUDGET"
      --batch-size 32 --bptt 64 --lr "$LR" --warmup-steps 50 --schedule cosine --eval-every 1000 --patience 0
      --checkpoint-minutes 5 --precision auto --seed 0 --no-progress --style-rows "$STYLE_ROWS")
if [ -d "$RUN/last" ]; then
  genseq train completion "${args[@]}" --resume "$RUN"
else
  genseq train completion "${args[@]}" --init "$INIT" --out "$RUN"
fi

# Each corpus's valid split with its own label, with none, and with the next corpus's label (a wrong one): read
# whole (the state carried, the label at each document's start) and in passages of 64 tokens from a fresh start.
for index in "${!CORPORA[@]}"; do
  corpus=${CORPORA[$index]}
  wrong=${CORPORA[$(( (index + 1) % ${#CORPORA[@]} ))]}
  for style in "$corpus" "" "$wrong"; do
    for reading in --exact "--passages 64"; do
      # shellcheck disable=SC2086  # $reading is one flag or a flag and its value
      echo "$corpus style=${style:-none} $reading $(genseq eval completion --model "$RUN" --data "$DATA/$corpus/valid" \
        --json $reading ${style:+--style "$style"})"
    done
  done
done
