#!/usr/bin/env bash
# What one steady-state training step asks of the GPU: for each image field (64x64 crops, full
# batches) and the SDF default, `nfield train --profile` counts kernel launches and host reads
# over steps 5-15 (the first four compile and autotune the kernels; the last reads the loss, as a
# log step does, and is left out with them). Launch counts depend on the
# GPU only through the kernels autotune picks (a tuned matmul may copy an operand first), so
# lavapipe (`apt-get install mesa-vulkan-drivers`) gives them to within a launch or two; it is
# slow, not wrong. On a real GPU, `PROFILE=times` adds each
# kernel's device time (kernels then run one at a time: their costs, not the step's time).
#
#   bench/gpu_profile.sh                      # every field
#   FIELDS="ffn hashgrid" bench/gpu_profile.sh
#
# The table is printed and written to bench/gpu-profile.md (committed), the most launched
# kernels of each field beside it; each run's profile.json stays in bench/results/.
DEVICE="${DEVICE:-wgpu}"
source "$(dirname "$0")/common.sh"
FIELDS="${FIELDS:-ffn siren hashgrid neurbf gnf sdf}"
PROFILE="${PROFILE:-launches}"
OUT="$PWD/bench/results/gpu-profile-$DEVICE"
mkdir -p "$OUT"
build_bin
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"

# A top-level number from a profile.json: field PROFILE_JSON KEY.
field() { sed -n "s/^  \"$2\": \([-0-9.e]*\).*/\1/p" "$1"; }

{
  echo "Per steady-state training step on $DEVICE (64x64 crops, full batches; the SDF default's 16,384"
  echo "points), steps 5-15 of \`nfield train --profile\`."
  echo
  echo "| field | kernel launches | host reads | most launched kernels (per step) |"
  echo "|---|---|---|---|"
  for field in $FIELDS; do
    if [ "$field" = sdf ]; then
      args=(configs/sdf/default.toml --set eval.resolution=32 --set eval.surface_samples=1000)
    else
      args=("configs/image/$field.toml" --set "task.crop=[64,64]" --set task.batch_size=0)
    fi
    rm -rf "${OUT:?}/$field"
    "$BIN" train "${args[@]}" --steps 16 --set train.log_every=1000 --device "$DEVICE" --out "$OUT" --name "$field" \
      --quiet --profile "$PROFILE" > "$OUT/$field.log" 2>&1 || { echo "failed: $field (see $OUT/$field.log)" >&2; exit 1; }
    json="$OUT/$field/profile.json"
    # Kernels in the order profile.json lists them (most launched first), five of them.
    top=$(awk -F'"' '/^      "launches_per_step"/ { launches = $3; gsub(/[: ,]/, "", launches) }
        /^      "name"/ { if (n++ < 5) printf "%s`%s` x%.1f", (n > 1 ? ", " : ""), $4, launches }' "$json")
    printf '| %s | %.1f | %.2f | %s |\n' "$field" "$(field "$json" launches_per_step)" "$(field "$json" host_reads_per_step)" "$top"
  done
} > "$OUT/table.md"
mv "$OUT/table.md" bench/gpu-profile.md && cat bench/gpu-profile.md
