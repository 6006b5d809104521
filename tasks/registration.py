"""The AR / PaDIR task-pair registration, now `padir.registration` (names kept for callers)."""
from padir.registration import (  # pylint: disable=unused-import
    AR_SUFFIX, PADIR_SUFFIX, add_task, noise_preprocessor, output_features, register_task_pair)
