#!/usr/bin/env bash
# The CUDA paths on a machine with an NVIDIA GPU, in one run (about 2.5 min on an H200):
# the CUDA tests (skipped on CPU-only machines), then `ufo train --device cuda` on the shipped
# recipe, fp32 and fp16 AMP side by side, with each run's last validation printed.
#   usage: tools/check_cuda.sh OUT_DIR     (UFO_NAS_DATA must point at the data sets)
# Results on an H200: tools/results/check_cuda-h200.md.
set -uo pipefail
out=${1:?usage: tools/check_cuda.sh OUT_DIR}
mkdir -p "$out"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
python3 -m pytest -q -o addopts="" -p no:cacheprovider tests/train/test_trainer_cuda.py \
    tests/backends/test_backends.py tests/test_evaluate.py
for v in fp32 amp; do
  flag=--no-amp; [ "$v" = amp ] && flag=--amp
  ( python3 -m ufo_nas train --recipe ufo_vit_tiny --out "$out/run-$v" --device cuda --threads 4 \
      $flag > "$out/train-$v.log" 2>&1; echo "exit $?" >> "$out/train-$v.log" ) &
done
wait
for v in fp32 amp; do grep -v "stage:" "$out/train-$v.log" | tail -3; done
python3 - "$out" <<'PY'
import csv, sys
for v in ("fp32", "amp"):
    last = {}
    for r in csv.DictReader(open(f"{sys.argv[1]}/run-{v}/metrics.csv")):
        if r["kind"] == "val":
            last[(r["stage"], r["task"], r["subnet"])] = f'{r["metric"]} {float(r["value"]):.3f}'
    print(v, "; ".join(f"{s} {t} {n}: {m}" for (s, t, n), m in sorted(last.items())))
PY
