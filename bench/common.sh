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
DEVICE="${DEVICE:-auto}"
# NFIELD_BIN runs a binary built elsewhere (a machine without cargo, or a copy that a rebuild
# cannot swap out from under a long bench); then build_bin builds nothing.
BIN="${NFIELD_BIN:-$CARGO_TARGET_DIR/release/nfield}"
build_bin() { [ -n "${NFIELD_BIN:-}" ] || cargo build --release --quiet "$@"; }

# A number from a run's summary.json: num RUN_DIR KEY.
num() { sed -n "s/^ *\"$2\": *\"\{0,1\}\([-0-9.e]*\).*/\1/p" "$1/summary.json"; }

# Seconds per step of a run between its logged steps FROM and TO (metrics.jsonl):
# seconds_per_step RUN_DIR FROM TO.
seconds_per_step() {
  awk -v from="$2" -v to="$3" -F'[:,}]' '/"step"/ { for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i + 1); if ($i ~ /"seconds"/) t = $(i + 1) }
      if (s == from) t0 = t; if (s == to) t1 = t } END { printf "%.4f", (t1 - t0) / (to - from) }' "$1/metrics.jsonl"
}

# Train one run into $OUT/NAME unless it finished before (a half-finished one is redone):
# train_run NAME CONFIG [nfield train arguments...].
train_run() {
  local name=$1 d="$OUT/$1"; shift
  [ -f "$d/summary.json" ] && return 0
  rm -rf "$d"
  "$BIN" train "$@" --device "$DEVICE" --out "$OUT" --name "$name" --quiet > /dev/null 2> "$OUT/$name.log" \
    || { echo "failed: $name (see $OUT/$name.log)" >&2; exit 1; }
  if [ -n "$(num "$d" psnr)" ]; then
    echo "  $name: $(num "$d" psnr) dB in $(num "$d" train_seconds) s" >&2
  else
    echo "  $name: IoU $(num "$d" iou), normal error $(num "$d" normal_error_deg) deg in $(num "$d" train_seconds) s" >&2
  fi
}

# Mean PSNR, SSIM and s/step of runs $OUT/<model>-<image> over the images that finished, as
# one Markdown table row: table_row MODEL IMAGE...
table_row() {
  local model=$1 n=0 p=0 q=0 ss=0 nss=0 sps=0 d s; shift
  for img in "$@"; do
    d="$OUT/$model-$img"
    [ -f "$d/summary.json" ] || continue
    n=$((n + 1)); p=$(num "$d" params)
    q=$(awk -v a="$q" -v b="$(num "$d" psnr)" 'BEGIN { print a + b }')
    sps=$(awk -v a="$sps" -v b="$(num "$d" steps_per_second)" 'BEGIN { print a + 1 / b }')
    s=$(num "$d" ssim); [ -n "$s" ] && { ss=$(awk -v a="$ss" -v b="$s" 'BEGIN { print a + b }'); nss=$((nss + 1)); }
  done
  [ "$n" = 0 ] && return 0
  awk -v m="$model" -v n="$n" -v p="$p" -v q="$q" -v ss="$ss" -v nss="$nss" -v t="$sps" \
    'BEGIN { printf "| %s | %d | %d | %.2f | %s | %.3f |\n", m, n, p, q / n, (nss ? sprintf("%.4f", ss / nss) : "-"), t / n }'
}

# The bench scripts' arguments: `--table` (only print the table of what finished) and image
# names; `bench_args DEFAULT_IMAGE... -- "$@"` sets TABLE_ONLY and IMAGES.
bench_args() {
  local defaults=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do defaults+=("$1"); shift; done
  shift
  TABLE_ONLY=0
  IMAGES=()
  for a in "$@"; do
    if [ "$a" = "--table" ]; then TABLE_ONLY=1; else IMAGES+=("$a"); fi
  done
  [ ${#IMAGES[@]} -gt 0 ] || IMAGES=("${defaults[@]}")
}
