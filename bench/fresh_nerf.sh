#!/usr/bin/env bash
# FreSh on a radiance field: does it pick the hash grid's finest resolution well on lego?
# `nfield fresh` scores each candidate by the spectrum of the untrained field's colour on a slice
# through the scene at the camera distance of the first training view (view directions zero)
# against that view on black, FreSh's NeRF protocol; then a small grid of the same values is
# trained for the same time budget and scored on the first 10 test views, side by side.
#
#   bench/fresh_nerf.sh                        # lego 100x100, 5 minutes per candidate
#   MINUTES=10 VALUES="256 512 1024 2048" bench/fresh_nerf.sh
#
# Runs and FreSh's report in bench/results/fresh-nerf-<minutes>min/; the table is printed and
# written to bench/fresh-nerf.md (committed).
DEVICE="${DEVICE:-cpu}"
source "$(dirname "$0")/common.sh"
MINUTES="${MINUTES:-5}"
VALUES="${VALUES:-128 256 512 1024 2048}"
SCENE="${SCENE:-../shared/data/nerf/lego_400}"
OUT="bench/results/fresh-nerf-${MINUTES}min"
mkdir -p "$OUT"
build_bin
list=$(echo "$VALUES" | tr ' ' ',')
common=(--set "task.path=$SCENE" --set task.downscale=4 --set model.log2_table_size=17)
fresh=(--set fresh.parameter=model.finest_resolution --set "fresh.candidates=[$list]" --set fresh.bins=32)
if [ ! -f "$OUT/fresh.txt" ]; then
  "$BIN" fresh configs/nerf/hashgrid.toml "${common[@]}" "${fresh[@]}" --device "$DEVICE" > "$OUT/fresh.txt.tmp" 2> "$OUT/fresh.log" \
    || { echo "failed: nfield fresh (see $OUT/fresh.log)" >&2; exit 1; }
  mv "$OUT/fresh.txt.tmp" "$OUT/fresh.txt"
fi
chosen=$(sed -n 's/^chosen: [^=]*= \([0-9]*\).*/\1/p' "$OUT/fresh.txt")
for v in $VALUES; do
  train_run "finest-$v" configs/nerf/hashgrid.toml "${common[@]}" --set "model.finest_resolution=$v" --set train.steps=100000000 \
    --set "train.max_seconds=$((MINUTES * 60))" --set eval.views=10 --set train.checkpoint_every=0
done
{
  echo "FreSh on lego 100x100 (hash grid, finest resolution), $MINUTES minutes of training per value, test PSNR over 10 views:"
  echo
  echo "| finest resolution | spectral distance | test PSNR (dB) | |"
  echo "|---|---|---|---|"
  for v in $VALUES; do
    distance=$(awk -v v="$v" '$1 == v { print $2 }' "$OUT/fresh.txt")
    mark=$([ "$v" = "$chosen" ] && echo "FreSh's choice" || echo "")
    echo "| $v | $distance | $(num "$OUT/finest-$v" psnr) | $mark |"
  done
  echo
  echo "FreSh took $(sed -n 's/.*(\([0-9.]*\) s)$/\1/p' "$OUT/fresh.txt" | tail -1) s."
} > "$OUT/table.md"
mv "$OUT/table.md" bench/fresh-nerf.md && cat bench/fresh-nerf.md
