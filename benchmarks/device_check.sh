#!/usr/bin/env bash
# benchmarks/device_check.sh DEST [flags]: the one-shot accelerator check (benchmarks/device_check.py's docstring) into /tmp/device_check; DEST gets device_check.{json,md,png}, log.txt and device_check.tgz (every part's files).
set -u; cd "$(dirname "$0")/.." || exit 1; dest=${1:?usage: benchmarks/device_check.sh DEST [flags]}; shift; work=${DEVICE_CHECK_WORK:-/tmp/device_check}; mkdir -p "$dest" "$work"
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" python3 -m benchmarks.device_check --out_dir "$work" --compilation_cache_dir "$work/jax_cache" "$@" 2>&1 | tee "$dest/log.txt"; rc=${PIPESTATUS[0]}
cp "$work"/device_check.{json,md,png} "$dest"/ 2>/dev/null; tar czf "$dest/device_check.tgz" --exclude=jax_cache -C "$work" . ; exit "$rc"
