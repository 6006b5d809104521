#!/bin/bash
# Scratch: decode_speed at batch 1, tiny x3, small x2, base x1, one after another.
. .venv/bin/activate
for spec in tiny:1 tiny:2 small:1 small:2 base:1 base:2; do
  m=${spec%%:*}; r=${spec#*:}
  echo "$m $r start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  timeout 900 python -m benchmarks.decode_speed --model $m --batch_sizes 1 --max_batch 0 --iterations 1,4 \
    --length_beams 1 --deep_shallow none --sweep_lengths '' --repeats 30 --row_rate_repeats 30 \
    --out_dir runs/roof2/$m$r > runs/roof2_$m$r.log 2>&1
  echo "$m $r end $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg) rc $?"
done
