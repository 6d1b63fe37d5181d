#!/usr/bin/env bash
# Trains the default language model shipped in genseq/models/lm from ../shared/data and, beside it,
# the word-level baseline it is compared with: the same data, the same 100 minutes, one core each
# (see ../shared/data/README.md for where each corpus comes from and how to obtain it).
# Usage: recipes/default-lm.sh [RUN_DIR]   (rerun the same command to resume after an interruption)
#        LABELS=folders recipes/default-lm.sh runs/default-lm-labelled   the same, with the four corpora as style
#        labels (docs/training.md): each file's label is its corpus folder, so `--style austen` writes like Austen
#        STEPS=10652 recipes/default-lm.sh RUN   the shipped default's step count instead of its 100 minutes, for a
#        machine without bf16 (fp32 on one AVX2 core takes several hours; resume across interruptions)
# Then: python recipes/ship_lm.py RUN_DIR genseq/models/lm
set -euo pipefail
DATA=${DATA:-../shared/data/text}
RUN=${1:-runs/default-lm}
BUDGET=100m
LABELS=${LABELS:-}
STEPS=${STEPS:-}
CORPORA=(austen mobydick shakespeare sotu)
export OMP_NUM_THREADS=1  # one core per model, as measured

# The baseline: pytorch/examples' word_language_model recipe (see recipes/word_baseline.py).
if [ -z "$LABELS" ] && [ ! -f "$RUN-word-baseline/report.json" ]; then  # a labelled run is compared with the unlabelled one
  python recipes/word_baseline.py --data "$DATA" --out "$RUN-word-baseline" --max-time $BUDGET --threads 1 \
    > "$RUN-word-baseline.log" 2>&1 &
fi

# auto: bf16 mixed precision where this machine runs it faster than fp32 (the shipped model was trained so,
# on a CPU with AVX512-BF16), fp32 elsewhere; the same command runs on any x86-64 or ARM CPU and on CUDA.
if [ -n "$STEPS" ]; then budget=(--max-steps "$STEPS"); else budget=(--max-time $BUDGET); fi
args=(--data "$DATA/*/train/*.txt" --valid "$DATA/*/valid/*.txt" "${budget[@]}" --precision auto
      --eval-every 1500 --checkpoint-minutes 5 --no-progress ${LABELS:+--labels-from "$LABELS"})
if [ -d "$RUN/last" ]; then
  genseq train completion "${args[@]}" --resume "$RUN"
else
  genseq train completion "${args[@]}" --out "$RUN" \
    --vocab-size 8000 --embedding-size 320 --hidden-size 640 --layers 2 --projection-size 320 --tie-weights \
    --embedding-dropout 0.1 --layer-dropout 0.2 --output-dropout 0.2 \
    --batch-size 32 --bptt 64 --lr 3e-3 --warmup-steps 200 --schedule cosine --clip-grad-norm 1.0 \
    --patience 0 --seed 0
fi
wait
for index in "${!CORPORA[@]}"; do
  corpus=${CORPORA[$index]}
  echo "$corpus $(genseq eval completion --model "$RUN" --data "$DATA/$corpus/valid" --exact --json)"
  if [ -n "$LABELS" ]; then  # the corpus with its own label, and with the next corpus's label (a wrong one)
    wrong=${CORPORA[$(( (index + 1) % ${#CORPORA[@]} ))]}
    echo "$corpus --style $corpus $(genseq eval completion --model "$RUN" --data "$DATA/$corpus/valid" --exact --json --style "$corpus")"
    echo "$corpus --style $wrong $(genseq eval completion --model "$RUN" --data "$DATA/$corpus/valid" --exact --json --style "$wrong")"
  fi
done
[ -n "$LABELS" ] || cat "$RUN-word-baseline/report.json"
