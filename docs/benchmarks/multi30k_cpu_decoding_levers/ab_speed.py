"""Translate-path speed of a PaDIR checkpoint at K = 1 and 4 (batch 64 throughput, batch-1
latency), with the code of REPO: python ab_speed.py REPO MODEL_DIR [JSON] (alternate two REPOs,
or two JSON decoding settings, e.g. '{"masked_logits_only": true}')."""
import json, os, sys, time, statistics, dataclasses
repo = sys.argv[1]
sys.path.insert(0, repo)
os.chdir(repo)
os.environ.setdefault("PADIR_MULTI30K_DIR", "/work/shared/data/multi30k")
from padir import translator as translator_lib, reporting
import tasks.multi30k  # registers the task
sources, _ = reporting.task_texts("multi30k_en_de_ar", "test_2016_flickr")
t = translator_lib.Translator.from_checkpoint(sys.argv[2])
out = []
for k in (1, 4):
  params = {**json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}"), "num_decode_iterations": k}
  t.translate(sources[:64], params)
  start = time.perf_counter(); t.predict(sources, params); bs64 = len(sources) / (time.perf_counter() - start)
  kwargs = {"decode_config": t.decode_config} if hasattr(t, "decode_config") else {}
  single = type(t)(t.model, t.params, dataclasses.replace(t.options, batch_size=1), **kwargs)
  single.translate(sources[:1], params)
  lat = []
  for s in sources[:60]:
    start = time.perf_counter(); single.translate([s], params); lat.append(1e3 * (time.perf_counter() - start))
  out.append(f"K={k} bs64 {bs64:.1f} sent/s  bs1 {statistics.median(lat):.1f} ms")
print(repo, *sys.argv[3:], " | ".join(out), flush=True)
