#!/usr/bin/env bash
# Seconds per full-batch training step, nfield next to the PyTorch references of ../shared/peer,
# in one run on the same image (a 256x256 centre crop of kodim13): the RBF fields and the hash grid
# at about 72K parameters, CAM's FFN (263K) with and without CAM, and SIREN (199K; no reference).
# Run it on an otherwise idle machine: it measures time.
#
#   bench/speed.sh                # 300 steps each (FFN and SIREN: 150, about ten times slower per step)
#   STEPS=1000 FFN_STEPS=300 IMAGE=kodim05 bench/speed.sh
#   MODELS="ffn ffn_cam" bench/speed.sh
#   MODELS=siren NFIELD_BIN=/path/to/an/older/nfield bench/speed.sh   # compare two builds
#
# nfield's time per step is taken between its logged steps 50 and the last (after the one-off
# neighbour search and kernel evaluation of step 1); the references exclude their first 20 steps.
DEVICE="${DEVICE:-cpu}"
source "$(dirname "$0")/common.sh"
IMAGE="${IMAGE:-kodim13}"
STEPS="${STEPS:-300}"
FFN_STEPS="${FFN_STEPS:-150}"
MODELS="${MODELS:-neurbf hashgrid gnf ffn ffn_cam}"
OUT="bench/results/speed-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
build_bin

ours() { # name steps config [overrides...]
  local name=$1 steps=$2 config=$3; shift 3
  "$BIN" train "$config" "$@" --device "$DEVICE" --out "$OUT" --name "$name" --quiet --steps "$steps" \
    --set "task.path=$KODAK/$IMAGE.png" --set "task.crop=[256,256]" --set train.log_every=50 > /dev/null 2> "$OUT/$name.log"
  seconds_per_step "$OUT/$name" 50 "$steps"
}
peer() { # script steps [arguments...]
  local script=$1 steps=$2; shift 2
  [ -x "$PYTHON" ] || { printf 'n/a'; return; }
  local name="peer-$script${1:+-${1#--}}"
  (cd "$PEER" && "$PYTHON" "$script.py" "$@" --image "$OLDPWD/$KODAK/$IMAGE.png" --steps "$steps" --out "$OLDPWD/$OUT/$name.json") > "$OUT/$name.log" 2>&1
  sed -n 's/.*"sec_per_step": \([0-9.e-]*\).*/\1/p' "$OUT/$name.json"
}

row() { # model nfield-seconds peer-seconds
  printf '| %s | %s | %s |\n' "$1" "$2" "$3"
}

echo "Seconds per full-batch step, $IMAGE 256x256, nfield on $DEVICE vs PyTorch $( [ -x "$PYTHON" ] && "$PYTHON" -c 'import torch; print(torch.__version__, "with", torch.get_num_threads(), "threads")' 2>/dev/null || echo "(not installed)"):"
printf '| model | nfield s/step | PyTorch s/step |\n|---|---|---|\n'
for model in $MODELS; do
  case "$model" in
    neurbf) row neurbf "$(ours neurbf "$STEPS" configs/image/neurbf.toml)" "$(peer neurbf "$STEPS")" ;;
    # shellcheck disable=SC2086
    hashgrid) row hashgrid "$(ours hashgrid "$STEPS" configs/image/hashgrid.toml $HASHGRID_72K)" "$(peer hashgrid "$STEPS")" ;;
    gnf) row gnf "$(ours gnf "$STEPS" configs/image/gnf.toml)" - ;;
    ffn) row ffn "$(ours ffn "$FFN_STEPS" configs/image/ffn.toml)" "$(peer ffn "$FFN_STEPS")" ;;
    ffn_cam) row ffn+cam "$(ours ffn_cam "$FFN_STEPS" configs/image/ffn_cam.toml)" "$(peer ffn "$FFN_STEPS" --cam)" ;;
    siren) row siren "$(ours siren "$FFN_STEPS" configs/image/siren.toml)" - ;;
    *) echo "bench/speed.sh: unknown model $model" >&2; exit 1 ;;
  esac
done
echo "(runs: $OUT)"
