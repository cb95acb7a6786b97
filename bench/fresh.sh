#!/usr/bin/env bash
# FreSh against the default value and a grid search over the same candidates, at equal steps, on
# Kodak 256x256 centre crops: SIREN's omega0 (default 30) and the Fourier features' sigma (default
# 10). Per image and model it trains every grid value and runs `nfield fresh` over the same
# values. FreSh's run is the grid run at the value it chose: the same config and seed train the
# same network, so it is not trained twice.
#
#   bench/fresh.sh                  # kodim01-12
#   STEPS=2000 bench/fresh.sh kodim05
#   bench/fresh.sh --table
#
# The default is 200 full-batch steps and five values per model (a SIREN step takes about a second
# at 256x256 on 2 cores), scored on every pixel. FreSh's own protocol trains far longer and
# scores pixels held out from training: HOLDOUT=0.1 does that (the table then compares
# holdout_psnr), and BATCH=16384 trains on random batches instead of the whole crop.
# FreSh's time is compared with a 2000-step run (the configs' length), extrapolated from the
# bench runs' time per step. Results accumulate in bench/results/fresh-<steps>[-h<holdout>][-b<batch>]/;
# finished work is skipped.
#
#   STEPS=2000 HOLDOUT=0.1 BATCH=16384 bench/fresh.sh kodim02
source "$(dirname "$0")/common.sh"
STEPS="${STEPS:-200}"
HOLDOUT="${HOLDOUT:-}"
BATCH="${BATCH:-0}"
MODELS="${MODELS:-siren ffn}"
SIREN_VALUES="${SIREN_VALUES:-10.0 30.0 60.0 90.0 150.0}"
FFN_VALUES="${FFN_VALUES:-2.0 6.0 10.0 20.0 40.0}"
OUT="${OUT:-bench/results/fresh-$STEPS${HOLDOUT:+-h$HOLDOUT}$([ "$BATCH" = 0 ] || echo "-b$BATCH")}"
METRIC=$([ -n "$HOLDOUT" ] && echo holdout_psnr || echo psnr)
bench_args kodim01 kodim02 kodim03 kodim04 kodim05 kodim06 kodim07 kodim08 kodim09 kodim10 kodim11 kodim12 -- "$@"
mkdir -p "$OUT"

key_of() { case "$1" in siren) echo omega0 ;; ffn) echo sigma ;; esac; }
default_of() { case "$1" in siren) echo 30.0 ;; ffn) echo 10.0 ;; esac; }
values_of() { case "$1" in siren) echo "$SIREN_VALUES" ;; ffn) echo "$FFN_VALUES" ;; esac; }

if [ "$TABLE_ONLY" = 0 ]; then
  [ -d "$KODAK" ] || { echo "bench/fresh.sh: $KODAK not found (put ../shared beside the repository, or set KODAK=DIR)" >&2; exit 1; }
  build_bin
  for img in "${IMAGES[@]}"; do
    for model in $MODELS; do
      image=(--set "task.path=$KODAK/$img.png" --set "task.crop=[256,256]")
      protocol=(--set "task.batch_size=$BATCH")
      [ -n "$HOLDOUT" ] && protocol+=(--set "task.holdout=$HOLDOUT")
      for v in $(values_of "$model"); do
        train_run "$model-$img-$v" "configs/image/$model.toml" --steps "$STEPS" --set "model.$(key_of "$model")=$v" "${image[@]}" "${protocol[@]}"
      done
      f="$OUT/$model-$img-fresh.txt"
      if [ ! -s "$f" ]; then
        list=$(values_of "$model" | tr ' ' ',')
        "$BIN" fresh "configs/image/${model}_fresh.toml" --device "$DEVICE" "${image[@]}" --set "fresh.candidates=[$list]" > "$f.tmp" 2> "$OUT/$model-$img-fresh.log" \
          || { echo "failed: fresh $model $img (see $OUT/$model-$img-fresh.log)" >&2; exit 1; }
        mv "$f.tmp" "$f"
        echo "  fresh $model $img: $(tail -1 "$f")" >&2
      fi
    done
  done
fi

echo "Kodak ${IMAGES[0]}..${IMAGES[-1]}, 256x256 centre crops, $STEPS $([ "$BATCH" = 0 ] && echo full-batch steps || echo "steps of $BATCH pixels"), mean $METRIC (dB) over the images finished${HOLDOUT:+ ($HOLDOUT of the pixels held out)}:"
printf '| model | images | default | FreSh | grid best | FreSh - grid best | FreSh s | FreSh / 2000-step run |\n|---|---|---|---|---|---|---|---|\n'
for model in $MODELS; do
  n=0; sd=0; sf=0; sb=0; st=0; sr=0
  for img in "${IMAGES[@]}"; do
    f="$OUT/$model-$img-fresh.txt"
    [ -s "$f" ] || continue
    chosen=$(sed -n 's/^chosen: [^ ]* = \([^ ]*\) (\([0-9.]*\) s)$/\1/p' "$f")
    secs=$(sed -n 's/^chosen: [^ ]* = \([^ ]*\) (\([0-9.]*\) s)$/\2/p' "$f")
    best=-1; complete=1
    for v in $(values_of "$model"); do
      d="$OUT/$model-$img-$v"
      [ -f "$d/summary.json" ] || { complete=0; break; }
      best=$(awk -v a="$best" -v b="$(num "$d" $METRIC)" 'BEGIN { print (b > a ? b : a) }')
    done
    [ "$complete" = 1 ] || continue
    n=$((n + 1))
    chosen_run="$OUT/$model-$img-$chosen"
    sd=$(awk -v a="$sd" -v b="$(num "$OUT/$model-$img-$(default_of "$model")" $METRIC)" 'BEGIN { print a + b }')
    sf=$(awk -v a="$sf" -v b="$(num "$chosen_run" $METRIC)" 'BEGIN { print a + b }')
    sb=$(awk -v a="$sb" -v b="$best" 'BEGIN { print a + b }')
    st=$(awk -v a="$st" -v b="$secs" 'BEGIN { print a + b }')
    sr=$(awk -v a="$sr" -v b="$secs" -v t="$(num "$chosen_run" train_seconds)" -v s="$STEPS" 'BEGIN { print a + b / (t * 2000 / s) }')
  done
  [ "$n" = 0 ] && continue
  awk -v m="$model ($(key_of "$model"))" -v n="$n" -v sd="$sd" -v sf="$sf" -v sb="$sb" -v st="$st" -v sr="$sr" \
    'BEGIN { printf "| %s | %d | %.2f | %.2f | %.2f | %+.2f | %.1f | %.1f %% |\n", m, n, sd / n, sf / n, sb / n, (sf - sb) / n, st / n, 100 * sr / n }'
done
echo
echo "FreSh's choices:"
for model in $MODELS; do
  for img in "${IMAGES[@]}"; do
    f="$OUT/$model-$img-fresh.txt"
    [ -s "$f" ] && echo "  $model $img: $(tail -1 "$f")"
  done
done
