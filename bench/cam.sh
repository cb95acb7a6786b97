#!/usr/bin/env bash
# CAM at equal steps: FFN, SIREN and NeuRBF, each with and without CAM, on centre crops of the
# Fourier-features paper's natural test images (../shared/data/images/fourier-features-div2k-test).
# CAM's own protocol is 2000 full-batch steps on the 512x512 images; on 2 CPU cores FFN takes about
# 0.9 s per step at 256x256 (1.5 s with CAM), so the default here is 256x256 crops and 500 steps,
# FFN's x0.1 milestones kept at 50 % and 75 % of the run.
#
#   bench/cam.sh                                  # images 012-015 (held out from tuning)
#   SIZE=512 STEPS=2000 bench/cam.sh 000 001 ...  # CAM's protocol (a GPU)
#   MODELS="ffn ffn_cam" bench/cam.sh
#   bench/cam.sh --table
#
# Results accumulate in bench/results/cam-<size>-<steps>/ and finished runs are skipped.
source "$(dirname "$0")/common.sh"
STEPS="${STEPS:-500}"
SIZE="${SIZE:-256}"
MODELS="${MODELS:-ffn ffn_cam siren siren_cam neurbf neurbf_cam}"
NATURAL="${NATURAL:-../shared/data/images/fourier-features-div2k-test}"
OUT="${OUT:-bench/results/cam-$SIZE-$STEPS}"
bench_args 012 013 014 015 -- "$@"
mkdir -p "$OUT"

if [ "$TABLE_ONLY" = 0 ]; then
  [ -d "$NATURAL" ] || { echo "bench/cam.sh: $NATURAL not found (put ../shared beside the repository, or set NATURAL=DIR)" >&2; exit 1; }
  build_bin
  for img in "${IMAGES[@]}"; do
    for model in $MODELS; do
      train_run "$model-$img" "configs/image/$model.toml" --steps "$STEPS" \
        --set "task.path=$NATURAL/image_$img.jpg" --set "task.crop=[$SIZE,$SIZE]" \
        --set "train.milestones=[$((STEPS / 2)),$((STEPS * 3 / 4))]"
    done
  done
fi

echo "Natural images ${IMAGES[*]}, ${SIZE}x${SIZE} centre crops, $STEPS full-batch steps; means over the images each model finished:"
printf '| model | images | params | PSNR (dB) | SSIM | s/step (not quiet) |\n|---|---|---|---|---|---|\n'
for model in $MODELS; do table_row "$model" "${IMAGES[@]}"; done
