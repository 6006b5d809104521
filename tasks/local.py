"""Local parallel text as seqio tasks (`padir.parallel_text`), under the names gin files use:
`from tasks import local` then `MIXTURE_OR_TASK_NAME = @local.parallel_text_task()` (the task.gin
that `padir distill` writes, and the config.gin of runs trained on it)."""
import gin

from padir import parallel_text
from padir.parallel_text import (  # pylint: disable=unused-import  (this module's public names)
    DEFAULT_SHUFFLE_BUFFER_SIZE, FileCheck, ParallelFiles, ParallelTextSource,
    check_parallel_files, find_parallel_files, register_parallel_text)

parallel_text_task = gin.configurable(parallel_text.parallel_text_task, module="tasks.local")
