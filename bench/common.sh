# Shared set-up for the bench scripts (sourced): run from the repository root with the shared
# target directory, and where the Kodak images and the PyTorch references live.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nfield-target}"
KODAK="${KODAK:-../shared/data/images/kodak}"
PEER="${PEER:-../shared/peer}"
PYTHON="${PYTHON:-$HOME/.cache/nfield-peer-venv/bin/python}"
# The hash grid at NeuRBF's Kodak budget: 12 levels x 2 features, 2^12 entries per level,
# 16..256, full batches: 70,779 parameters with its MLP.
HASHGRID_72K="--set model.levels=12 --set model.log2_table_size=12 --set task.batch_size=0"
