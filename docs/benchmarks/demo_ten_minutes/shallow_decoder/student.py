"""Scratch: a demo CTC student on the distilled data. student.py DEMO_DIR MODEL_DIR STEPS [binding ...]"""
import os, sys
from padir import demo, distill as distill_lib
demo_dir, model_dir, steps, *bindings = sys.argv[1:]
size = demo.SIZES["default"]
demo.prepare_corpus(size)
demo.train([*demo.STUDENT_GIN_FILES, os.path.join(demo_dir, "distilled", distill_lib.TASK_GIN)],
           model_dir, int(steps), size,
           [f"trainer.train.init_checkpoint = {os.path.join(demo_dir, 'teacher_init')!r}", *bindings])
print("DONE")
