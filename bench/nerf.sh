#!/usr/bin/env bash
# Radiance fields on NeRF-synthetic lego (400x400, box-filtered by DOWNSCALE) against the PyTorch
# reference (../shared/peer/nerf.py), side by side: the same scene, sizes and wall-clock budget,
# test PSNR over the first 10 test views every 5 minutes of training (evaluation time is not
# training time, as the reference counts it), and rays and field samples per second. Run it on
# an otherwise idle machine: it measures time.
#
#   bench/nerf.sh                                   # hashgrid and the reference, 100x100 and 200x200, 20 min
#   MODELS="hashgrid neurbf gnf hashgrid_cam" PEER_RUNS=0 SIZES=4 MINUTES=10 bench/nerf.sh
#   bench/nerf.sh --table                           # only print the table of what finished
#
# Every field gets the reference's grid (16 levels x 2 features, 2^17 entries per level, 16 to
# 1024; the configs have instant-ngp's 2^19 and 2048), so the hash grids compare at equal size.
# Runs go to bench/results/nerf-<MINUTES>min/ (finished ones are skipped); the table is printed
# and written to bench/nerf-<MINUTES>min.md, which is committed.
DEVICE="${DEVICE:-cpu}"
source "$(dirname "$0")/common.sh"
MINUTES="${MINUTES:-20}"
SIZES="${SIZES:-4 2}"
MODELS="${MODELS:-hashgrid}"
PEER_RUNS="${PEER_RUNS:-1}"
SCENE="${SCENE:-../shared/data/nerf/lego_400}"
OUT="bench/results/nerf-${MINUTES}min"
mkdir -p "$OUT"
marks=$(seq 300 300 $((MINUTES * 60 - 1)) | paste -sd, -)

if [ "${1:-}" != "--table" ]; then
  build_bin
  for size in $SIZES; do
    for model in $MODELS; do
      train_run "$model-ds$size" "configs/nerf/$model.toml" --set "task.path=$SCENE" --set "task.downscale=$size" \
        --set train.steps=100000000 --set "train.max_seconds=$((MINUTES * 60))" --set "train.eval_seconds=[$marks]" \
        --set eval.views=10 --set train.checkpoint_every=0 --set model.log2_table_size=17 --set model.finest_resolution=1024
    done
    ref="$OUT/reference-ds$size.json"
    if [ "$PEER_RUNS" = 1 ] && [ ! -f "$ref" ]; then
      "$PYTHON" "$PEER/nerf.py" --scene "$SCENE" --downscale "$size" --minutes "$MINUTES" --eval-every-min 5 --out "$ref.tmp" \
        > "$OUT/reference-ds$size.log" 2>&1 || { echo "failed: the reference (see $OUT/reference-ds$size.log)" >&2; exit 1; }
      mv "$ref.tmp" "$ref"
    fi
  done
fi

# One row per run: name, parameters, PSNR at each mark and at the end, steps, rays/s, samples/s.
table() {
  python3 - "$OUT" "$MINUTES" "$SIZES" "$MODELS" <<'PY'
import json, os, sys
out, minutes, sizes, models = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
marks = list(range(5, minutes + 1, 5))
print(f"| run | size | params | " + " | ".join(f"{m} min" for m in marks) + " | steps | rays/s | samples/s |")
print("|---|---|---|" + "---|" * len(marks) + "---|---|---|")
for size in sizes:
    for model in models:
        d = os.path.join(out, f"{model}-ds{size}")
        if not os.path.exists(os.path.join(d, "summary.json")):
            continue
        s = json.load(open(os.path.join(d, "summary.json")))
        lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
        evals = [l for l in lines if l.get("eval")]
        psnr = [next((e["psnr"] for e in evals if abs(e["seconds"] - 60 * m) < 30), None) for m in marks[:-1]] + [evals[-1]["psnr"]]
        last = [l for l in lines if "rays_seen" in l][-1]
        secs = s["train_seconds"]
        side = 400 // int(size)
        row = " | ".join(f"{p:.2f}" if p is not None else "-" for p in psnr)
        print(f"| nfield {model} | {side}x{side} | {s['params']:,} | {row} | {s['steps']} | {last['rays_seen'] / last['seconds']:,.0f} | {last['samples_seen'] / last['seconds']:,.0f} |")
    ref = os.path.join(out, f"reference-ds{size}.json")
    if os.path.exists(ref):
        r = json.load(open(ref))
        curve = {round(c["minutes"] / 5) * 5: c["psnr"] for c in r["curve"]}
        row = " | ".join(f"{curve[m]:.2f}" if m in curve else "-" for m in marks)
        rays = r["rays_per_step"] * r["steps"]
        warm = min(r["warmup_steps"], r["steps"])
        # The reference evaluates all 128 samples of a ray during its warm-up, its logged mean after it.
        samples = r["rays_per_step"] * (warm * r["samples_per_ray"] + (r["steps"] - warm) * (r["evaluated_samples_per_ray_after_warmup"] or 0))
        side = r["size"][0]
        print(f"| PyTorch reference | {side}x{side} | {r['params']:,} | {row} | {r['steps']} | {rays / r['seconds']:,.0f} | {samples / r['seconds']:,.0f} |")
PY
}
{
  echo "NeRF-synthetic lego, test PSNR (dB) over the first 10 test views after each many minutes of training on $DEVICE ($(nproc) cores), $MINUTES-minute budgets:"
  echo
  table
} | tee "bench/nerf-${MINUTES}min.md"
