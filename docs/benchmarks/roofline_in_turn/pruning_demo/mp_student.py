"""Scratch: the demo's mask-predict student (experiments/builtin_padir.gin) on the distilled data."""
import os, sys
from padir import demo, distill as distill_lib
demo_dir, model_dir, steps = sys.argv[1:4]
size = demo.SIZES["default"]
demo.prepare_corpus(size)
demo.train(["models/padir_tiny.gin", demo.PADIR_GIN, os.path.join(demo_dir, "distilled", distill_lib.TASK_GIN)],
           model_dir, int(steps), size,
           [f"trainer.train.init_checkpoint = {os.path.join(demo_dir, 'teacher_init')!r}"])
print("DONE")
