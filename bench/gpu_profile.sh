#!/usr/bin/env bash
# Kernel launches per steady-state training step on the wgpu path: for each image field (64x64
# crops, full batches) and the SDF default, a 4-step and a 12-step run with CubeCL's profiling
# logger at level "minimal" (one `Executing <kernel>` line per launch); their difference over 8
# is one steady step's launches (set-up, the first step's compilation, the final evaluation and
# checkpoint cancel out). Launch counts do not depend on the GPU, so lavapipe gives the same
# numbers as a real one (`apt-get install mesa-vulkan-drivers`); it is slow, not wrong.
# For each kernel's device time on a GPU, set `level = "basic"` in the cubecl.toml of a run's
# folder (bench/results/gpu-profile-<device>/<field>-12/) and run `nfield train` there again:
# CubeCL then serialises the launches to time them and logs `| <duration> | <kernel>` lines.
#
#   bench/gpu_profile.sh                      # every field
#   FIELDS="ffn hashgrid" bench/gpu_profile.sh
#
# The table is printed and written to bench/gpu-profile.md (committed), the most frequent
# kernels of each field beside it.
DEVICE="${DEVICE:-wgpu}"
source "$(dirname "$0")/common.sh"
FIELDS="${FIELDS:-ffn siren hashgrid neurbf gnf sdf}"
OUT="$PWD/bench/results/gpu-profile-$DEVICE"
mkdir -p "$OUT"
build_bin
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"

# launches FIELD STEPS: run in a folder whose cubecl.toml logs every launch; print the count.
launches() {
  local field=$1 steps=$2 dir="$OUT/$1-$2" config args=()
  if [ "$field" = sdf ]; then
    config="$PWD/configs/sdf/default.toml"
    args=(--set eval.resolution=32 --set eval.surface_samples=1000)
  else
    config="$PWD/configs/image/$field.toml"
    args=(--set "task.crop=[64,64]" --set task.batch_size=0)
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  printf '[profiling.logger]\nlevel = "minimal"\nfile = "%s"\nappend = false\n' "$dir/launches.log" > "$dir/cubecl.toml"
  (cd "$dir" && "$BIN" train "$config" "${args[@]}" --steps "$steps" --set train.log_every=1000 \
    --device "$DEVICE" --out "$dir" --name run --quiet > /dev/null 2> "$dir/train.log") \
    || { echo "failed: $field, $steps steps (see $dir/train.log)" >&2; exit 1; }
  cp "$dir/launches.log" "$OUT/$field-$steps.log"
  grep -c "^Executing " "$dir/launches.log" || true
}

{
  echo "Kernel launches per steady-state training step on $DEVICE (64x64 crops, full batches; the SDF"
  echo "default's 16,384 points): (launches of a 12-step run - a 4-step run) / 8."
  echo
  echo "| field | launches per step | most launched kernels (per step) |"
  echo "|---|---|---|"
  for field in $FIELDS; do
    short=$(launches "$field" 4)
    long=$(launches "$field" 12)
    per_step=$(awk -v a="$short" -v b="$long" 'BEGIN { printf "%.1f", (b - a) / 8 }')
    # Per kernel: (launches in the 12-step run - in the 4-step run) / 8, the most frequent first.
    top=$(awk '/^Executing / { sub(/^Executing /, ""); sub(/_[0-9a-f]+$/, ""); n[$0] += (FILENAME ~ /-12\.log$/ ? 1 : -1) }
        END { for (k in n) if (n[k] > 0) printf "%.1f %s\n", n[k] / 8, k }' "$OUT/$field-4.log" "$OUT/$field-12.log" \
      | sort -rn | head -5 | awk -F' [|] ' '{ split($1, f, " "); name = f[2] ($2 ~ /Op$/ ? "<" $2 ">" : "")
        printf "%s`%s` x%s", (NR > 1 ? ", " : ""), name, f[1] }')
    echo "| $field | $per_step | $top |"
  done
} > "$OUT/table.md"
mv "$OUT/table.md" bench/gpu-profile.md && cat bench/gpu-profile.md
