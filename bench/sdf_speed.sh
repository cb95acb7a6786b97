#!/usr/bin/env bash
# Seconds per SDF training step and for meshing, on the knot in assets/: the grid-based SDF fields
# (hash grid, NeuRBF, GNF) with their configs' batches of 16,384 points, then `nfield mesh` of the
# trained run on a RESOLUTION^3 grid. Run it on an otherwise idle machine: it measures time.
#
#   bench/sdf_speed.sh                                        # 100 steps, meshes at 128^3
#   MODELS=neurbf RESOLUTION=256 bench/sdf_speed.sh
#   NFIELD_BIN=/path/to/an/older/nfield bench/sdf_speed.sh    # compare two builds
#
# Time per step is taken between the logged steps 20 and STEPS (after the first batches).
DEVICE="${DEVICE:-cpu}"
source "$(dirname "$0")/common.sh"
STEPS="${STEPS:-100}"
RESOLUTION="${RESOLUTION:-128}"
MODELS="${MODELS:-hashgrid neurbf gnf}"
OUT="bench/results/sdf-speed-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
build_bin

echo "SDF of assets/knot.obj on $DEVICE: s per training step ($STEPS steps of 16,384 points), and s for nfield mesh at $RESOLUTION^3:"
printf '| field | s/step | mesh s |\n|---|---|---|\n'
for model in $MODELS; do
  "$BIN" train "configs/sdf/$model.toml" --device "$DEVICE" --out "$OUT" --name "$model" --quiet --steps "$STEPS" \
    --set train.log_every=10 --set eval.resolution=32 > /dev/null 2> "$OUT/$model.log" \
    || { echo "failed: $model (see $OUT/$model.log)" >&2; exit 1; }
  per_step=$(seconds_per_step "$OUT/$model" 20 "$STEPS")
  start=$(date +%s.%N)
  "$BIN" mesh "$OUT/$model" --resolution "$RESOLUTION" --device "$DEVICE" > "$OUT/$model-mesh.log" 2>&1 \
    || { echo "failed: nfield mesh $model (see $OUT/$model-mesh.log)" >&2; exit 1; }
  printf '| %s | %s | %.1f |\n' "$model" "$per_step" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
done
echo "(runs: $OUT)"
