"""SeqIO task registrations for PaDIR (import a module by name to register its tasks).

Naming: every corpus NAME is registered as two tasks sharing one `PadirVocabulary`:

  NAME_ar      `inputs` / `targets`: AR teacher and baseline (`padir.features.ARFeatureConverter`)
  NAME_padir   the same + `targets_noised` / `targets_loss_weights` from `padir_noise`
               (`padir.features.PadirFeatureConverter`)

Modules:

  tasks.builtin   builtin_{ar,padir}: the generated offline corpus (`padir.corpus`), default
                  multi-modality; builtin_mm{0,1,2,3}_{ar,padir}: each multi-modality level.
  tasks.multi30k  multi30k_en_de_{ar,padir}, multi30k_de_en_{ar,padir} (../shared/data/multi30k)
  tasks.wmt       wmt14_{en_de,de_en}_{ar,padir}, wmt16_{en_ro,ro_en}_{ar,padir} (TFDS)
  tasks.local     `register_parallel_text(...)`: your own folder of aligned files or a
                  `source<TAB>target` TSV (distilled data), e.g. NAME = "builtin_distilled";
                  gin's `local.parallel_text_task`.

The registration machinery is library code (`padir.registration`, `padir.parallel_text`):
`tasks` imports `padir`, never the reverse (`python -m padir.tools.check_layers`).

Select a task as in T5X: in gin, `import tasks.builtin` then
`MIXTURE_OR_TASK_NAME = 'builtin_padir'` (see gin/tasks/). Registration is idempotent:
registering a name again with the same configuration is a no-op; with another configuration it
is an error unless `overwrite=True`.

Generated data and trained vocabularies are cached under `$PADIR_DATA_DIR` (default
`~/.cache/padir`).
"""
from padir.corpus import DATA_DIR_ENV, default_data_dir  # pylint: disable=unused-import
