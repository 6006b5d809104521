"""benchmarks/device_check.py, the one-shot accelerator check: its CPU dry run end to end (every
part in its own process, with TensorFlow, SeqIO and tensorboardX unimportable, as on the GPU
machine), its failure handling, and the stored CPU reference."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from benchmarks import device_check

REPO = pathlib.Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "seqio", "tensorboardX")


def _blocking_env(tmp_path) -> dict:
  """An environment whose Python processes (children too: PYTHONPATH) cannot import BLOCKED."""
  site = tmp_path / "blocker"
  site.mkdir()
  (site / "sitecustomize.py").write_text(
      "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in BLOCKED))
  return dict(os.environ, JAX_PLATFORMS="cpu",
              PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
              XLA_FLAGS="--xla_backend_optimization_level=0"
                        " --xla_llvm_disable_expensive_passes=true")


@pytest.mark.slow
def test_dry_run_writes_every_part_without_tensorflow(tmp_path):
  env = _blocking_env(tmp_path)
  out = tmp_path / "out"
  # The dry run's own budget is 60 s (about 100 CPU seconds); the test allows a loaded 2-core
  # machine more before a part is cut off.
  command = [sys.executable, "-m", "benchmarks.device_check", "--dry_run", "--out_dir", str(out),
             "--budget_s", "420", "--part_timeout_s", "200"]
  cache = os.environ.get("PADIR_TEST_JAX_CACHE",
                         str(pathlib.Path.home() / ".cache" / "padir_jax_tests"))
  command += ["--compilation_cache_dir", cache]
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

  report = json.loads((out / "device_check.json").read_text())
  parts = {p["name"]: p for p in report["parts"]}
  assert list(parts) == ["rates", "correctness", "decode:test:bfloat16", "train:test:ar",
                         "train:test:padir"]
  failed = {n: (p["status"], p.get("error"), p.get("log_tail", "")[-2000:])
            for n, p in parts.items() if p["status"] != "ok"}
  assert not failed, failed
  for name in parts:  # Each part ran in its own process, which logged there.
    assert (out / "parts" / f"{device_check._slug(name)}.log").exists()

  assert report["machine"]["platform"] == "cpu"
  rates = report["rates"]
  assert rates["matmul_flop_s"]["float32"] > 1e8 and rates["memory_bytes_s"] > 1e8

  correct = parts["correctness"]["result"]
  assert correct["same_batch"] and correct["same_weights"]
  assert correct["match"], correct["highest"]
  assert set(correct["highest"]) == {"ar_greedy", "padir@4_lb1", "padir@4_lb3"}

  decode = parts["decode:test:bfloat16"]["result"]
  found = {(r["system"], r["iterations"], r["batch_size"]) for r in decode["results"]}
  assert found == {(s, k, b) for b in (1, 2) for s, k in
                   (("ar_greedy", None), ("ar_beam4", None), ("padir", 1), ("padir", 2))}
  assert all(r["latency_ms_p50"] > 0 and r["speedup_vs_ar_greedy"] > 0
             for r in decode["results"])
  assert decode["roofline"]["matmul_dtype"] == "bfloat16"  # This run's rates, not its own.
  assert decode["roofline"]["matmul_flop_s"] == rates["matmul_flop_s"]["bfloat16"]
  assert {r["batch_size"] for r in decode["roofline"]["rows"]} == {1, 2}
  assert (out / decode["out_dir"] / "decode_speed.md").exists()

  for kind in ("ar", "padir"):
    train = parts[f"train:test:{kind}"]["result"]
    assert train["dtype"] == "bfloat16" and train["batch_size"] == 4 and train["length"] == 16
    assert train["tokens_per_s"] > 0 and train["flop_per_step"] > 0
    assert 0 < train["share_of_measured_bf16_rate"] and train["mfu_nominal"] is None  # CPU.

  headline = {h["point"]: h for h in report["headline"]}
  assert len(headline) == 6
  assert all(h["measured"] is not None for h in headline.values()), headline
  assert headline["float32 tokens = the CPU reference (AR greedy, PaDIR@4 lb1/lb3; precision "
                  "highest)"]["measured"] == 1.0
  markdown = (out / "device_check.md").read_text()
  for heading in ("## Headline numbers", "## Parts", "## Decoding", "### Roofline",
                  "## Training step", "## Correctness"):
    assert heading in markdown
  assert (out / "device_check.png").stat().st_size > 1000


def test_a_failing_or_hanging_part_is_recorded_and_the_report_still_written(tmp_path):
  args = device_check.parse_args(["--dry_run", "--out_dir", str(tmp_path)])
  os.makedirs(tmp_path / "parts")
  record = device_check.run_isolated("nonsense", args, timeout=120)
  assert record["status"] == "failed" and "unknown part 'nonsense'" in record["error"]
  record = device_check.run_isolated("rates", args, timeout=0.2)  # Killed while importing.
  assert record["status"] == "timeout" and "timed out" in record["error"]
  assert device_check._is_oom("XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating")

  # No time left: every part is skipped, and the report (targets not measured) is written.
  args = device_check.parse_args(["--dry_run", "--out_dir", str(tmp_path), "--budget_s", "0"])
  report = device_check.run(args)
  assert {p["status"] for p in report["parts"]} == {"skipped"}
  assert all(h["measured"] is None for h in report["headline"])
  assert "not measured" in (tmp_path / "device_check.md").read_text()


@pytest.mark.slow
def test_the_check_imports_no_tensorflow_or_seqio(tmp_path):
  code = textwrap.dedent("""
      import sys
      for name in ("tensorflow", "seqio"):
        try:
          __import__(name)
        except ImportError:
          pass
        else:
          raise SystemExit(f"{name} was importable: the blocker does not work")
      from benchmarks import decode_speed, device_check, train_speed
      from padir import models, network, optimizers, reporting, trainer
      model = device_check.train_model("padir", "test", "bfloat16")
      batches = device_check.train_batches("padir", model.special_tokens, 2, 8, 1)
      assert (batches[0]["decoder_input_tokens"] == model.special_tokens.mask_id).any()
      loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                      ("tensorflow", "seqio", "tensorboardX") and sys.modules[m] is not None)
      print("LOADED", loaded)
      """)
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_blocking_env(tmp_path),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "LOADED []" in proc.stdout


def test_the_stored_cpu_reference_is_small_and_far_from_ties():
  path = pathlib.Path(device_check.DEFAULT_REFERENCE)
  assert path.stat().st_size < 64_000
  reference = json.loads(path.read_text())
  assert reference["sentences"] == [list(s) for s in device_check.REFERENCE_SENTENCES]
  rows = len(device_check.REFERENCE_SENTENCES)
  for name, tokens in reference["tokens"].items():
    assert len(tokens) == rows, name
  # Float32 on another device rounds differently; a greedy choice this far from a tie holds.
  assert min(reference["ar_greedy_min_margin"]) > 1e-3
  assert len(reference["multi30k_test_2016_flickr_words"]) == 1000


def test_the_stored_word_counts_give_multi30k_lengths_where_the_data_is_not():
  """The GPU machine has no ../shared/data: the decoding parts read the reference's word counts
  (`_lengths_dir`), which must give decode_speed the lengths the corpus gives."""
  from benchmarks import decode_speed  # pylint: disable=g-import-not-at-top
  stored, source = decode_speed.corpus_lengths(
      device_check._lengths_dir(device_check.DEFAULT_REFERENCE), 1.3, 128, 0)
  assert len(stored) == 1000 and "multi30k test_2016_flickr" in source
  assert 8 < sum(t for _, t in stored) / len(stored) < 30  # Multi30k's pieces, EOS included.
  if os.path.exists(os.path.join(device_check.MULTI30K, "test_2016_flickr.en.gz")):
    assert stored == decode_speed.corpus_lengths(device_check.MULTI30K, 1.3, 128, 0)[0]


def test_the_gpu_plan_measures_what_the_targets_need_first():
  parts = device_check.plan(device_check.parse_args([]))
  assert parts[:6] == ["rates", "correctness", "decode:base:bfloat16", "decode:base:float32",
                       "train:base:ar", "train:base:padir"]
  assert parts[6] == "decode:base:bfloat16:cudnn"  # The fused-attention A/B.
  assert parts[7:] == ["decode:small:bfloat16", "decode:small:float32", "train:small:ar",
                       "train:small:padir", "decode:tiny:bfloat16", "decode:tiny:float32"]
