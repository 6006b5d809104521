"""The import layering that docs/architecture.md states holds (`padir.tools.check_layers`), and
the check finds a violation of each of its rules in a synthetic tree."""
import os

import pytest

from padir.tools import check_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(tmp_path, files):
  for path, text in files.items():
    full = tmp_path / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
  return str(tmp_path)


def test_the_repository_follows_its_layers():
  assert check_layers.check(ROOT) == []


def test_architecture_doc_lists_every_layer_in_order():
  with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
    doc = f.read()
  positions = [doc.find(f"**{name}**") for name, _ in check_layers.LAYERS]
  assert -1 not in positions, "a layer of check_layers.LAYERS is missing from the doc"
  assert positions == sorted(positions)
  for _, patterns in check_layers.LAYERS:
    for pattern in patterns:
      assert f"`{pattern.removesuffix('.*')}`" in doc, pattern


@pytest.mark.parametrize("files, expected", [
    ({"padir/models.py": "", "padir/special_tokens.py": "def f():\n  from padir import models\n"},
     "special_tokens.py:2: padir.special_tokens (layer 'base') imports padir.models"),
    ({"padir/cli.py": "", "padir/errors.py": "from . import cli\n"},  # relative, resolved
     "padir.errors (layer 'base') imports padir.cli"),
], ids=["function-level import", "relative import"])
def test_an_import_from_a_higher_layer_is_a_violation(tmp_path, files, expected):
  [problem] = check_layers.check(_tree(tmp_path, {"padir/__init__.py": "", **files}))
  assert expected in problem


def test_padir_importing_tasks_is_a_package_cycle(tmp_path):
  root = _tree(tmp_path, {
      "padir/__init__.py": "",
      "padir/corpus.py": "",
      "padir/commands/__init__.py": "",
      "padir/commands/demo.py": "import tasks.builtin\n",
      "tasks/__init__.py": "",
      "tasks/builtin.py": "from padir import corpus\n",
  })
  [problem] = check_layers.check(root)
  assert problem.startswith("import cycle between packages padir -> tasks -> padir")
  assert "padir.commands.demo imports tasks.builtin" in problem


def test_a_module_cycle_within_a_layer_and_an_unplaced_module(tmp_path):
  root = _tree(tmp_path, {
      "padir/__init__.py": "",
      "padir/layers.py": "from padir import network\n",
      "padir/network.py": "from padir import layers\n",
      "padir/newthing.py": "",
  })
  problems = check_layers.check(root)
  assert "import cycle between modules: padir.layers -> padir.network -> padir.layers" in problems
  assert any(p.startswith("padir.newthing: in 0 layers") for p in problems)


def test_main_exit_status(tmp_path, capsys):
  assert check_layers.main([ROOT]) == 0
  bad = _tree(tmp_path, {"padir/__init__.py": "", "padir/files.py": "import padir.cli\n",
                         "padir/cli.py": ""})
  assert check_layers.main([bad]) == 1
  assert "padir.files (layer 'base') imports padir.cli" in capsys.readouterr().out
