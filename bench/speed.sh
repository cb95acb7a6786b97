#!/usr/bin/env bash
# Seconds per full-batch training step, nfield next to the PyTorch references of ../shared/peer,
# in one run on the same image (a 256x256 centre crop of kodim13), at about 72K parameters.
# Run it on an otherwise idle machine: it measures time.
#
#   bench/speed.sh                # 300 steps each
#   STEPS=1000 IMAGE=kodim05 bench/speed.sh
#
# nfield's time per step is taken between its logged steps 50 and STEPS (after the one-off
# neighbour search and kernel evaluation of step 1); the references exclude their first 20 steps.
source "$(dirname "$0")/common.sh"
IMAGE="${IMAGE:-kodim13}"
STEPS="${STEPS:-300}"
DEVICE="${DEVICE:-cpu}"
OUT="bench/results/speed-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/nfield"

ours() { # name config [overrides...]
  local name=$1 config=$2; shift 2
  "$BIN" train "$config" "$@" --device "$DEVICE" --out "$OUT" --name "$name" --quiet --steps "$STEPS" \
    --set "task.path=$KODAK/$IMAGE.png" --set "task.crop=[256,256]" --set train.log_every=50 > /dev/null 2> "$OUT/$name.log"
  awk -v n="$STEPS" -F'[:,}]' '/"step"/ { for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i + 1); if ($i ~ /"seconds"/) t = $(i + 1) }
      if (s == 50) t50 = t; if (s == n) tn = t } END { printf "%.4f", (tn - t50) / (n - 50) }' "$OUT/$name/metrics.jsonl"
}
peer() { # script
  [ -x "$PYTHON" ] || { printf 'n/a'; return; }
  (cd "$PEER" && "$PYTHON" "$1.py" --image "$OLDPWD/$KODAK/$IMAGE.png" --steps "$STEPS" --out "$OLDPWD/$OUT/peer-$1.json") > "$OUT/peer-$1.log" 2>&1
  sed -n 's/.*"sec_per_step": \([0-9.e-]*\).*/\1/p' "$OUT/peer-$1.json"
}

nr=$(ours neurbf configs/image/neurbf.toml)
# shellcheck disable=SC2086
hg=$(ours hashgrid configs/image/hashgrid.toml $HASHGRID_72K)
gnf=$(ours gnf configs/image/gnf.toml)
pnr=$(peer neurbf)
phg=$(peer hashgrid)
echo "Seconds per full-batch step, $IMAGE 256x256, $STEPS steps, nfield on $DEVICE vs PyTorch $( [ -x "$PYTHON" ] && "$PYTHON" -c 'import torch; print(torch.__version__, "with", torch.get_num_threads(), "threads")' 2>/dev/null || echo "(not installed)"):"
printf '| model | nfield s/step | PyTorch s/step |\n|---|---|---|\n'
printf '| neurbf | %s | %s |\n| hashgrid | %s | %s |\n| gnf | %s | - |\n' "$nr" "$pnr" "$hg" "$phg" "$gnf"
echo "(runs: $OUT)"
