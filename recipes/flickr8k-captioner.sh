#!/usr/bin/env bash
# Trains a Show, Attend and Tell captioner (soft attention) on Flickr8k on one GPU and scores it on the test split.
# Data: Flickr8k's 8,091 photos with five captions each, in the official split the paper reports on (6,000 training,
# 1,000 validation, 1,000 test images) as packaged in Karpathy's dataset_flickr8k.json. Encoder: torchvision's ImageNet
# ResNet-101, frozen, on 448-pixel images, which gives a 14 x 14 grid of 2,048 features: the paper's 196
# locations (it used VGG-19's 14 x 14 x 512). The feature cache holds 6.5 GB (float16).
# The paper (Xu et al. 2015, arXiv:1502.03044, Table 1, soft attention) reports on the Flickr8k test split
# BLEU-1/2/3/4 67.0/44.8/29.9/19.5 and METEOR 18.93 (COCO: BLEU-4 24.3, METEOR 23.90); genseq prints them as
# fractions (0.195). Needs the internet once (the photos, Karpathy's split file, the ResNet weights) and Java for
# METEOR (it is left out without Java). Usage: recipes/flickr8k-captioner.sh [RUN_DIR]; rerun to resume.
# Not yet run on Flickr8k (no machine of this project reaches the data). Estimates, to be replaced by the first
# run's figures: under an hour on one current GPU (encoding 8,091 photos once, then about 470 steps of 64 caption
# pairs per epoch), and the paper's figures within a BLEU-4 point or two (a stronger encoder than VGG-19, but
# subword pieces and genseq's own tokenisation instead of the evaluation's PTB tokenizer; see docs/captioning.md).
set -euo pipefail
DATA=${DATA:-runs/flickr8k}  # a folder with dataset_flickr8k.json and images/
RUN=${1:-runs/flickr8k-captioner}

if ! ls "$DATA"/dataset_*.json > /dev/null 2>&1; then
  mkdir -p "$DATA/images" runs/downloads
  curl -fL -o runs/downloads/Flickr8k_Dataset.zip \
    https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip
  curl -fL -o runs/downloads/caption_datasets.zip \
    https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip
  unzip -q -j -o runs/downloads/Flickr8k_Dataset.zip 'Flicker8k_Dataset/*.jpg' -d "$DATA/images"
  unzip -q -j -o runs/downloads/caption_datasets.zip '*dataset_flickr8k.json' -d "$DATA"
fi

if [ -d "$RUN/last" ]; then
  genseq train captioning --data "$DATA" --resume "$RUN"
else
  genseq train captioning --data "$DATA" --out "$RUN" \
    --encoder resnet101 --encoder-weights imagenet --image-size 448 \
    --vocab-size 4000 --feature-size 512 --embedding-size 512 --hidden-size 512 --attention-size 512 --dropout 0.5 \
    --epochs 20 --batch-size 64 --lr 1e-3 --warmup-steps 200 --clip-grad-norm 5 --attention-regularization 1 \
    --max-caption-tokens 50 --patience 4 --seed 0
fi

genseq eval captioning --model "$RUN" --data "$DATA" --split test --num-beams 1 3 5 --json | tee "$RUN/test-metrics.json"
