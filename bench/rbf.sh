#!/usr/bin/env bash
# NeuRBF's Kodak protocol: 256x256 centre crops, about 72K parameters, 3500 full-batch steps.
# Trains, per image: NeuRBF, NeuRBF without its sinusoid composition (the paper's "no MSC on
# either" ablation), GNF, the hash grid sized to the same budget, and the PyTorch reference of
# NeuRBF from ../shared/peer (when its venv exists), then prints the table of means.
#
#   bench/rbf.sh                  # kodim01-12
#   bench/rbf.sh kodim13          # other images
#   bench/rbf.sh --table          # only print the table from the results so far
#   MODELS="neurbf gnf" bench/rbf.sh
#
# Results accumulate in bench/results/rbf-<steps>/<model>-<image>/ and finished runs are skipped, so an
# interrupted bench continues where it stopped (the full set takes hours on 2 cores).
# Quality only: for seconds per step side by side with PyTorch use bench/speed.sh on a quiet machine.
source "$(dirname "$0")/common.sh"
STEPS="${STEPS:-3500}"
MODELS="${MODELS:-neurbf neurbf-no-sinusoids gnf hashgrid peer-neurbf}"
OUT="${OUT:-bench/results/rbf-$STEPS}"
bench_args kodim01 kodim02 kodim03 kodim04 kodim05 kodim06 kodim07 kodim08 kodim09 kodim10 kodim11 kodim12 -- "$@"
mkdir -p "$OUT"

# Config and overrides per model (all at about 72K parameters).
config_for() {
  case "$1" in
    neurbf) echo "configs/image/neurbf.toml" ;;
    neurbf-no-sinusoids) echo "configs/image/neurbf.toml --set model.rbf_sinusoids=false --set model.decoder_sinusoids=false" ;;
    gnf) echo "configs/image/gnf.toml" ;;
    hashgrid) echo "configs/image/hashgrid.toml $HASHGRID_72K" ;;
    *) echo "bench/rbf.sh: unknown model $1" >&2; exit 1 ;;
  esac
}

train_one() { # model image
  local model=$1 img=$2 d="$OUT/$1-$2"
  if [ "$model" != peer-neurbf ]; then
    # shellcheck disable=SC2046
    train_run "$model-$img" $(config_for "$model") --steps "$STEPS" --set "task.path=$KODAK/$img.png" --set "task.crop=[256,256]"
    return
  fi
  [ -f "$d/summary.json" ] && return 0
  [ -x "$PYTHON" ] || { echo "  skipping peer-neurbf: no $PYTHON (see $PEER/README.md)" >&2; return 0; }
  rm -rf "$d"; mkdir -p "$d"
  (cd "$PEER" && "$PYTHON" neurbf.py --image "$OLDPWD/$KODAK/$img.png" --steps "$STEPS" --out "$OLDPWD/$d/peer.json") > "$d/log.txt" 2>&1 \
    || { echo "failed: $model on $img (see $d/log.txt)" >&2; exit 1; }
  # The reference's JSON in nfield's summary keys.
  "$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); json.dump({"params": r["params"], "steps": r["steps"], "train_seconds": r["seconds"], "steps_per_second": 1/r["sec_per_step"], "psnr": r["psnr"]}, open(sys.argv[2], "w"), indent=1)' "$d/peer.json" "$d/summary.json"
  echo "  $model-$img: $(num "$d" psnr) dB in $(num "$d" train_seconds) s" >&2
}

if [ "$TABLE_ONLY" = 0 ]; then
  [ -d "$KODAK" ] || { echo "bench/rbf.sh: $KODAK not found (put ../shared beside the repository, or set KODAK=DIR)" >&2; exit 1; }
  build_bin
  for img in "${IMAGES[@]}"; do
    for model in $MODELS; do train_one "$model" "$img"; done
  done
fi

echo "Kodak 256x256 centre crops, $STEPS full-batch steps; means over the images each model has finished:"
printf '| model | images | params | PSNR (dB) | SSIM | s/step (not quiet) |\n|---|---|---|---|---|---|\n'
for model in $MODELS; do table_row "$model" "${IMAGES[@]}"; done
