#!/usr/bin/env bash
# The main job: set up, then benchmark lenet_fast against stock PyTorch on this machine.
# (The Fashion-MNIST training program replaces this once it exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -P -m lenet_fast.info
python3 -P -m lenet_fast.bench "$@"
