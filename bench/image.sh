#!/usr/bin/env bash
# Image baselines on 256x256 centre crops of Kodak images: one sweep per model over the images,
# then its table with means over the images (finished runs are skipped when run again).
#
#   bench/image.sh                         # kodim01-12, CPU step budgets (about 30 min on 2 cores)
#   BUDGET=paper bench/image.sh            # the papers' step budgets (for a GPU)
#   bench/image.sh kodim05 kodim13         # other images (names in ../shared/data/images/kodak)
#   MODELS="ffn siren" DEVICE=cpu JOBS=2 bench/image.sh
#   MODELS="hashgrid neurbf" bench/image.sh  # NeuRBF at the default config's budget (not in the default set)
#
# Per-run results stay in bench/results/image-<budget>/<model>/.
source "$(dirname "$0")/common.sh"
DEVICE="${DEVICE:-auto}"
BUDGET="${BUDGET:-cpu}"
MODELS="${MODELS:-ffn siren hashgrid}"
JOBS="${JOBS:-1}"
IMAGES=("$@")
[ ${#IMAGES[@]} -eq 0 ] && IMAGES=(kodim01 kodim02 kodim03 kodim04 kodim05 kodim06 kodim07 kodim08 kodim09 kodim10 kodim11 kodim12)
[ -d "$KODAK" ] || { echo "bench/image.sh: $KODAK not found (put ../shared beside the repository, or set KODAK=DIR)" >&2; exit 1; }

# Steps and batch per model. cpu: what fits ~30 minutes for 3 models x 12 images on 2 cores
# (random batches; a full-batch FFN step on 256x256 takes ~1.5 s there).
# paper: full batches, FFN/CAM's and SIREN's 2000 steps, NeuRBF's 3500 for the hash grid.
# On the CPU budget NeuRBF gets the hash grid's parameter count (its config asks for 72K, the
# paper's Kodak budget), so the two compare at equal size, steps and batch.
settings_for() {
  case "$BUDGET:$1" in
    cpu:ffn|cpu:siren) echo "--set train.steps=200 --set task.batch_size=8192" ;;
    cpu:hashgrid) echo "--set train.steps=300 --set task.batch_size=16384" ;;
    cpu:neurbf) echo "--set train.steps=300 --set task.batch_size=16384 --set model.params=432000" ;;
    paper:hashgrid|paper:neurbf) echo "--set train.steps=3500 --set task.batch_size=0" ;;
    paper:*) echo "--set train.steps=2000 --set task.batch_size=0" ;;
    *) echo "unknown BUDGET $BUDGET" >&2; exit 1 ;;
  esac
}

build_bin
OUT="bench/results/image-$BUDGET"
mkdir -p "$OUT"
paths=$(printf "$KODAK/%s.png," "${IMAGES[@]}")
for model in $MODELS; do
  read -ra settings <<< "$(settings_for "$model")"
  "$BIN" sweep "configs/image/$model.toml" --grid "task.path=[${paths%,}]" --set "task.crop=[256,256]" "${settings[@]}" \
    --jobs "$JOBS" --device "$DEVICE" --out "$OUT" --name "$model" > "$OUT-$model.log" 2>&1 \
    || { echo "failed: the $model sweep (see $OUT-$model.log and $OUT/$model/)" >&2; exit 1; }
  echo "$model, Kodak ${IMAGES[0]}..${IMAGES[-1]} (${#IMAGES[@]} images), 256x256 centre crops, budget $BUDGET, device $DEVICE; means over images:"
  "$BIN" table "$OUT/$model" --average task.path
done
