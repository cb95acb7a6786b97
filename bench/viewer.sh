#!/usr/bin/env bash
# The viewer's frame rate and its cost to training, on an otherwise idle machine:
# - pictures per second at 256x256 and 800x800 for a trained SDF (configs/sdf/default.toml, an
#   orbit turning once) and a trained image field (configs/default.toml), from
#   `nfield view RUN --screenshot ... --frames N` (each picture rendered afresh at full size; the
#   image opens at one field sample per screen pixel, so its 256x256 crop fills the 256x256
#   view and a 256x256 part of the 800x800 one, the rest being background);
# - training steps per second of configs/default.toml with the window open against headless.
# Runs under xvfb-run when there is no display (apt-get install xvfb).
#
#   bench/viewer.sh                 # CPU
#   DEVICE=wgpu bench/viewer.sh     # a GPU, sharing its device with the window
#
# Runs and screenshots in bench/results/viewer-<device>/; the table is printed and written to
# bench/viewer-<device>.md (committed).
DEVICE="${DEVICE:-cpu}"
source "$(dirname "$0")/common.sh"
FRAMES="${FRAMES:-10}"
# Training steps of the with/without-window comparison (the default's 300 take 9 s: too short).
STEPS="${STEPS:-1500}"
OUT="bench/results/viewer-$DEVICE"
mkdir -p "$OUT"
build_bin
display=(env)
[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || display=(xvfb-run -a -s "-screen 0 1280x1000x24")

train_run image configs/default.toml
train_run sdf configs/sdf/default.toml
{
  echo "Viewer on $DEVICE ($(nproc) cores): pictures per second, each rendered afresh at full size ($FRAMES per run):"
  echo
  echo "| run | 256x256 | 800x800 |"
  echo "|---|---|---|"
  for run in image sdf; do
    row="| $run |"
    for size in 256x256 800x800; do
      line=$("${display[@]}" "$BIN" view "$OUT/$run" --screenshot "$OUT/$run-$size.png" --frames "$FRAMES" --size "$size" --device "$DEVICE" 2> "$OUT/$run-$size.log") \
        || { echo "failed: viewing $run at $size (see $OUT/$run-$size.log)" >&2; exit 1; }
      row="$row $(echo "$line" | sed -n 's/.*: \([0-9.]*\) pictures\/s.*/\1/p') |"
    done
    echo "$row"
  done
  echo
  rm -rf "$OUT/headless" "$OUT/window"
  "$BIN" train configs/default.toml --steps "$STEPS" --device "$DEVICE" --out "$OUT" --name headless --quiet > /dev/null 2> "$OUT/headless.log"
  "${display[@]}" "$BIN" train configs/default.toml --steps "$STEPS" --device "$DEVICE" --out "$OUT" --name window --viewer --exit-when-done > /dev/null 2> "$OUT/window.log" \
    || { echo "failed: training with the window (see $OUT/window.log)" >&2; exit 1; }
  headless=$(num "$OUT/headless" steps_per_second)
  window=$(num "$OUT/window" steps_per_second)
  change=$(awk -v a="$headless" -v b="$window" 'BEGIN { d = 100 * (1 - b / a); if (d >= 0) printf "%.1f %% fewer", d; else printf "%.1f %% more", -d }')
  echo "Training configs/default.toml for $STEPS steps: $headless steps/s headless, $window steps/s with the window open ($change)."
} > "$OUT/table.md"
mv "$OUT/table.md" "bench/viewer-$DEVICE.md" && cat "bench/viewer-$DEVICE.md"
