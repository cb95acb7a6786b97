#!/usr/bin/env bash
# SDF fitting on the Stanford armadillo, bunny (35k faces, watertight) and dragon: every SDF
# field at the same steps, batch and point pool (the configs in configs/sdf/), evaluated on a
# 256^3 grid (IoU of inside and outside) and by marching cubes against the mesh (Chamfer-L1,
# F-score at 0.01, normal angle error from the field's gradient and from the mesh's facets), all
# in the [-1, 1] box the mesh is scaled into. Then, per mesh, the time of the ground-truth signed
# distance for a million points, and the scores of the exact SDF meshed on the same grid.
#
#   bench/sdf.sh                      # the three meshes, every field
#   bench/sdf.sh armadillo            # one mesh
#   bench/sdf.sh --table              # only print the table from the results so far
#   MODELS="neurbf hashgrid" STEPS=20000 BATCH=262144 bench/sdf.sh   # the papers' protocol (GPU)
#
# Results accumulate in bench/results/sdf-<steps>x<batch>/<model>-<mesh>/; finished runs are skipped.
source "$(dirname "$0")/common.sh"
STEPS="${STEPS:-2000}"
BATCH="${BATCH:-16384}"
RESOLUTION="${RESOLUTION:-256}"
MODELS="${MODELS:-neurbf hashgrid gnf siren}"
OUT="${OUT:-bench/results/sdf-${STEPS}x${BATCH}}"
MESHES_DIR="${MESHES_DIR:-../shared/data}"
bench_args armadillo bunny dragon -- "$@"
mkdir -p "$OUT"

mesh_path() {
  case "$1" in
    armadillo) echo "$MESHES_DIR/instant-ngp/sdf/armadillo.obj" ;;
    bunny) echo "$MESHES_DIR/meshes/bunny_35k_watertight_quartet.obj" ;;
    dragon) echo "$MESHES_DIR/meshes/dragon_50k_watertight_quartet.obj" ;;
    lucy) echo "$MESHES_DIR/meshes/lucy_50k_watertight.obj" ;;
    *) echo "bench/sdf.sh: unknown mesh $1 (armadillo, bunny, dragon, lucy)" >&2; exit 1 ;;
  esac
}

if [ "$TABLE_ONLY" = 0 ]; then
  cargo build --release --quiet --bin nfield --example sdf_queries
  for mesh in "${IMAGES[@]}"; do
    path=$(mesh_path "$mesh")
    [ -f "$path" ] || { echo "bench/sdf.sh: $path not found (put ../shared beside the repository, or set MESHES_DIR)" >&2; exit 1; }
    for model in $MODELS; do
      train_run "$model-$mesh" "configs/sdf/$model.toml" --steps "$STEPS" --set "task.batch_size=$BATCH" \
        --set "task.path=$path" --set "eval.resolution=$RESOLUTION"
    done
    [ -f "$OUT/ground-truth-$mesh.txt" ] || "$CARGO_TARGET_DIR/release/examples/sdf_queries" "$path" 1000000 "$RESOLUTION" > "$OUT/ground-truth-$mesh.txt"
  done
fi

echo "SDF fits, $STEPS steps of $BATCH points, evaluated on a ${RESOLUTION}^3 grid (IoU: inside; outside is NeuRBF's convention):"
printf '| mesh | field | params | train s | IoU | IoU outside | Chamfer-L1 | F-score | normal error (deg) | mesh normal error (deg) |\n|---|---|---|---|---|---|---|---|---|---|\n'
for mesh in "${IMAGES[@]}"; do
  for model in $MODELS; do
    d="$OUT/$model-$mesh"
    [ -f "$d/summary.json" ] || continue
    printf '| %s | %s | %s | %.0f | %.4f | %.5f | %.4f | %.3f | %.2f | %.2f |\n' "$mesh" "$model" "$(num "$d" params)" "$(num "$d" train_seconds)" \
      "$(num "$d" iou)" "$(num "$d" iou_outside)" "$(num "$d" chamfer_l1)" "$(num "$d" fscore)" "$(num "$d" normal_error_deg)" "$(num "$d" mesh_normal_error_deg)"
  done
done
echo
echo "Ground truth (BVH distance + hierarchical winding-number sign, all cores), and the exact SDF meshed on the same grid:"
for mesh in "${IMAGES[@]}"; do
  [ -f "$OUT/ground-truth-$mesh.txt" ] && sed 's|^.*/||' "$OUT/ground-truth-$mesh.txt"
done
exit 0
