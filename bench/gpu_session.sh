#!/usr/bin/env bash
# The GPU checks that wait for a lent GPU, in one prepared run (a loan is 15 minutes of device
# time, start included): each run has its own time box, the parts go most wanted first, and the
# table is written as it grows, so a call cut short still brings back what finished.
#  1. Seconds per training step on wgpu for each image field: 256x256 crop of assets/coffee.png,
#     full batches, 300 steps, timed between logged steps 100 and 300.
#  2. The viewer's pictures without its window (the GPU machine has no display): `nfield render
#     --orbit` at 800x800 of a trained SDF and a trained radiance field, pictures per second. A
#     window adds one draw of a buffer it already has (`src/viewer/display.rs`).
#  3. CAM's protocol: FFN with and without CAM, 512x512, 2000 full-batch steps, on natural images
#     012 and 013 (PSNR and seconds per step).
#
# Here, first: bench/gpu_pack.sh. Then the device tool's `run` with carry [".gpu"],
# timeout_s 560 and the command `bench/gpu_session.sh`; the table comes back as
# $OUT/gpu-session.md (the runs stay on the machine). Locally (lavapipe, to try the script):
# SMOKE=1 bench/gpu_session.sh, which writes bench/results/gpu-session/.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu
SMOKE="${SMOKE:-0}"
if [ -n "${OUT:-}" ]; then RESULTS=/tmp/nfield-gpu-session TABLE="$OUT/gpu-session.md"; else RESULTS=bench/results/gpu-session TABLE=bench/results/gpu-session/gpu-session.md; fi
mkdir -p "$RESULTS" "$(dirname "$TABLE")"
: > "$TABLE"
say() { echo "$*" | tee -a "$TABLE"; }
# A number from a run's summary.json: num RUN_DIR KEY.
num() { sed -n "s/^ *\"$2\": *\"\{0,1\}\([-0-9.e]*\).*/\1/p" "$1/summary.json" 2> /dev/null; }
seconds_per_step() {
  awk -v from="$2" -v to="$3" -F'[:,}]' '/"step"/ { for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i + 1); if ($i ~ /"seconds"/) t = $(i + 1) }
      if (s == from) t0 = t; if (s == to) t1 = t } END { if (t1 > t0) printf "%.4f", (t1 - t0) / (to - from); else printf "-" }' "$1/metrics.jsonl" 2> /dev/null
}

if [ -f "$PACK/nfield.xz" ] && [ "$SMOKE" != 1 ]; then
  BIN=/tmp/nfield
  xz -dc "$PACK/nfield.xz" > "$BIN" && chmod +x "$BIN"
  for f in "$PACK"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
  if ! ls /usr/share/vulkan/icd.d/*nvidia* > /dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  IMAGES="$PACK/images"
  COMMIT=$(cat "$PACK/commit")
else
  BIN="${NFIELD_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nfield-target}/release/nfield}"
  IMAGES="${NATURAL:-../shared/data/images/fourier-features-div2k-test}"
  COMMIT="$(git rev-parse --short HEAD) (working tree)"
fi
DEVICE="${DEVICE:-wgpu}"
if [ "$SMOKE" = 1 ]; then
  # Tiny sizes, to check the script's plumbing on lavapipe.
  CROP=64 IMAGE_STEPS=110 CAM_SIZE=32 CAM_STEPS=20 SDF_STEPS=20 NERF_STEPS=20 VIEW=48x48 FRAMES=2 BOX=300
else
  CROP=256 IMAGE_STEPS=300 CAM_SIZE=512 CAM_STEPS=2000 SDF_STEPS=1000 NERF_STEPS=1000 VIEW=800x800 FRAMES=20 BOX=120
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2> /dev/null | sed 's/^/GPU: /' | tee -a "$TABLE"
say "nfield $COMMIT, --device $DEVICE"
say

# train NAME SECONDS CONFIG [arguments...]: one run into $RESULTS/NAME, killed after SECONDS.
train() {
  local name=$1 seconds=$2; shift 2
  rm -rf "${RESULTS:?}/$name"
  timeout "$seconds" "$BIN" train "$@" --device "$DEVICE" --out "$RESULTS" --name "$name" --quiet > /dev/null 2> "$RESULTS/$name.log" \
    || echo "  $name: stopped or failed (see $name.log)" >&2
}

say "1. Seconds per full-batch step, ${CROP}x${CROP} crop of assets/coffee.png, steps 100 to $IMAGE_STEPS:"
say
say "| field | s/step | PSNR (dB) |"
say "|---|---|---|"
for field in ffn siren hashgrid neurbf gnf; do
  train "speed-$field" "$BOX" "configs/image/$field.toml" --steps "$IMAGE_STEPS" --set task.path=assets/coffee.png \
    --set "task.crop=[$CROP,$CROP]" --set task.batch_size=0 --set train.log_every=50
  say "| $field | $(seconds_per_step "$RESULTS/speed-$field" 100 "$IMAGE_STEPS") | $(num "$RESULTS/speed-$field" psnr) |"
done
say

say "2. The viewer's pictures without a window: \`nfield render --orbit N --size $VIEW\`, the"
say "   pictures after the first (N = $FRAMES against N = 1, so start-up and compilation cancel):"
say
say "| run | trained | pictures/s |"
say "|---|---|---|"
train sdf "$BOX" configs/sdf/default.toml --steps "$SDF_STEPS"
train nerf "$BOX" configs/nerf/default.toml --steps "$NERF_STEPS"
for run in sdf nerf; do
  [ -f "$RESULTS/$run/summary.json" ] || { say "| $run | did not finish | |"; continue; }
  rate="stopped (see $run-render.log)"
  seconds=()
  for frames in 1 "$FRAMES"; do
    start=$(date +%s.%N)
    timeout "$BOX" "$BIN" render "$RESULTS/$run" --orbit "$frames" --size "$VIEW" --device "$DEVICE" > /dev/null 2>> "$RESULTS/$run-render.log" || break
    seconds+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
  done
  [ "${#seconds[@]}" = 2 ] && rate=$(awk -v a="${seconds[0]}" -v b="${seconds[1]}" -v n="$FRAMES" 'BEGIN { printf "%.2f", (n - 1) / (b - a) }')
  say "| $run | $(num "$RESULTS/$run" steps) steps in $(num "$RESULTS/$run" train_seconds) s | $rate |"
done
say
say "3. CAM's protocol: ${CAM_SIZE}x${CAM_SIZE} centre crops, $CAM_STEPS full-batch steps (s/step from step $((CAM_STEPS / 4)) on):"
say
say "| run | PSNR (dB) | s/step |"
say "|---|---|---|"
for img in 012 013; do
  [ -f "$IMAGES/image_$img.jpg" ] || { say "| image $img | not packed | |"; continue; }
  for model in ffn ffn_cam; do
    train "cam-$model-$img" "$BOX" "configs/image/$model.toml" --steps "$CAM_STEPS" --set "task.path=$IMAGES/image_$img.jpg" \
      --set "task.crop=[$CAM_SIZE,$CAM_SIZE]" --set "train.milestones=[$((CAM_STEPS / 2)),$((CAM_STEPS * 3 / 4))]" \
      --set "train.log_every=$((CAM_STEPS / 20))"
    say "| $model $img | $(num "$RESULTS/cam-$model-$img" psnr) | $(seconds_per_step "$RESULTS/cam-$model-$img" $((CAM_STEPS / 4)) "$CAM_STEPS") |"
  done
done
say

# The device tool brings back at most 8 files: the logs travel as one.
if [ -n "${OUT:-}" ]; then (cd "$RESULTS" && tar czf "$OUT/gpu-session-logs.tgz" ./*.log); fi
