#!/usr/bin/env bash
# Fine-tunes the shipped default language model on the same data with the four corpora as style labels (each file
# labelled by its corpus folder). The tokenizer gains one control symbol per corpus after its 8,000 pieces (every
# text keeps its ids) and the model one embedding row each. docs/training.md has what 55 and 90 minutes of one core
# give: labels that help on some corpora, not all, which is why the shipped default has none.
# Usage: recipes/default-lm-labels.sh [RUN_DIR]   (rerun the same command to resume after an interruption)
#        BUDGET=90m LR=2e-3 recipes/default-lm-labels.sh RUN   a longer budget and a higher peak learning rate
# Then: python recipes/ship_lm.py RUN_DIR genseq/models/lm
set -euo pipefail
DATA=${DATA:-../shared/data/text}
RUN=${1:-runs/default-lm-labels}
BUDGET=${BUDGET:-55m}
LR=${LR:-5e-4}
CORPORA=(austen mobydick shakespeare sotu)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core, as the default was trained

# The default's own batch and window; a learning rate of a sixth of its peak (LR), decayed over the budget, moves
# the weights towards the labels without undoing what they know; validation on the four valid splits (labelled).
args=(--data "$DATA/*/train/*.txt" --valid "$DATA/*/valid/*.txt" --labels-from folders --max-time "$BUDGET"
      --batch-size 32 --bptt 64 --lr "$LR" --warmup-steps 50 --schedule cosine --eval-every 1000 --patience 0
      --checkpoint-minutes 5 --precision auto --seed 0 --no-progress)
if [ -d "$RUN/last" ]; then
  genseq train completion "${args[@]}" --resume "$RUN"
else
  genseq train completion "${args[@]}" --init default --out "$RUN"
fi

# Each corpus's valid split with its own label, with none, and with the next corpus's label (a wrong one).
for index in "${!CORPORA[@]}"; do
  corpus=${CORPORA[$index]}
  wrong=${CORPORA[$(( (index + 1) % ${#CORPORA[@]} ))]}
  for style in "$corpus" "" "$wrong"; do
    echo "$corpus style=${style:-none} $(genseq eval completion --model "$RUN" --data "$DATA/$corpus/valid" --json \
      ${style:+--style "$style"})"
  done
done
