#!/usr/bin/env bash
# The main job: set up, then train and evaluate LeNet-5 on Fashion-MNIST with lenet_fast (the
# tutorial's recipe: 10 epochs, batch 64, Adam 1e-3). Arguments go to the training program, e.g.
#   bash scripts/main.sh --epochs 20 --save ckpt.pt
#   bash scripts/main.sh --impl torch --loader torchvision      # the tutorial's own pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -P -m lenet_fast.info
python3 -P -m lenet_fast.train "$@"
