"""The project's user-facing exception classes: the bottom of the import graph (imports nothing
of padir), so any library module can raise them and `padir.cli` can catch them.

Library code raises; only the command handler (`cli.command`) turns these into one line on
stderr and an exit status. Errors specific to one module (`gin_utils.GinFlagError`,
`trainer.TrainConfigError`, `checkpoints.NoUsableCheckpointError`, ...) stay in that module and
subclass from here.
"""


class UserError(Exception):
  """An error the user can fix (a file, a checkpoint, a setting); its message says what and how.
  Subclassed together with the builtin kind it is (e.g. `(UserError, RuntimeError)`)."""


class UsageError(ValueError):
  """A flag or setting that cannot work: the command exits with status 2 (argparse's)."""


# What a subcommand reports as one line instead of a traceback: bad flags, settings and values
# (ValueError: GinFlagError, TrainConfigError, CheckpointMismatchError, TextFileError, unknown
# task names, ...), missing or unreadable files (OSError), non-finite training (FloatingPointError)
# and the project's own `UserError`s.
USER_ERRORS = (OSError, ValueError, FloatingPointError, UserError)
