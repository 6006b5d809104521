"""Checks the import layering of `padir/`, `tasks/`, `launch/` and `benchmarks/` (the order is
`LAYERS`; docs/architecture.md states the same):

  python -m padir.tools.check_layers        # prints each violation; exit status 1 if any

Every import statement is read with `ast` (module level and inside functions alike; names given
as strings to `importlib` are configuration, not imports). Three rules:

1. layers: a module imports only modules of its own layer or of a layer below it;
2. no cycle between modules;
3. no cycle between the top-level packages: `tasks` imports `padir`, so nothing in `padir`
   imports `tasks` (nor `launch` / `benchmarks`, which import both).

A module in no layer (or in two) is a violation too: a new module is placed in `LAYERS` (and in
docs/architecture.md) when it is added.
"""
import ast
import dataclasses
import fnmatch
import os
import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

PACKAGES = ("padir", "tasks", "launch", "benchmarks")

# Bottom first. Each name is an `fnmatch` pattern of module names (`padir.theory.*` covers the
# modules of the `padir/theory/` package); a module matches exactly one. The modules of
# `padir/decoding/` and `padir/models/` are named one by one, so a new one is placed on purpose:
# `padir.decoding.choice` (the token choice and sampling filters) is below the rest of decoding
# (the configs, AR search and refinement all use it), and a package's `__init__` (`padir.decoding`,
# `padir.models`) re-exports its modules.
LAYERS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("base", ("padir.errors", "padir.files", "padir.quiet", "padir.special_tokens",
              "padir.partitioning", "padir.metrics", "padir.timing", "padir.tables", "padir.theory",
              "padir.theory.*")),
    ("network", ("padir.layers", "padir.network", "padir.losses")),
    ("token choice", ("padir.decoding.choice",)),
    ("decoding", ("padir.decoding", "padir.decoding.config", "padir.decoding.ar",
                  "padir.decoding.pieces", "padir.decoding.refine")),
    ("models", ("padir.length", "padir.models", "padir.models.base", "padir.models.ar",
                "padir.models.padir", "padir.ctc")),
    ("data", ("padir.preprocessors", "padir.features", "padir.data", "padir.vocab",
              "padir.corpus", "padir.registration", "padir.parallel_text")),
    ("training", ("padir.checkpoints", "padir.t5_import", "padir.optimizers",
                  "padir.student_init", "padir.gin_utils", "padir.train_step",
                  "padir.trainer")),
    ("inference", ("padir.translator", "padir.evaluation", "padir.average", "padir.distill")),
    ("experiments", ("padir.reporting", "padir.pipeline", "padir.demo")),
    ("tasks", ("tasks", "tasks.*")),
    ("entry points", ("padir", "padir.cli", "padir.commands", "padir.commands.*",
                      "padir.tools", "padir.tools.*")),
    ("applications", ("launch", "launch.*", "benchmarks", "benchmarks.*")),
)


@dataclasses.dataclass(frozen=True)
class Import:
  importer: str  # module name
  imported: str  # module name
  path: str
  line: int


def module_files(root: str, packages: Sequence[str] = PACKAGES) -> Dict[str, str]:
  """Module name -> file path, for every .py file of `packages` under `root`."""
  modules = {}
  for package in packages:
    for folder, dirs, names in os.walk(os.path.join(root, package)):
      dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
      for name in sorted(names):
        if not name.endswith(".py"):
          continue
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, root)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        modules[".".join(parts)] = path
  return modules


def _resolve(name: str, modules: Dict[str, str]) -> Optional[str]:
  """The project module `name` refers to (`padir.models.Foo` -> `padir.models`), or None."""
  while name:
    if name in modules:
      return name
    name = name.rpartition(".")[0]
  return None


def imports(root: str, packages: Sequence[str] = PACKAGES) -> List[Import]:
  """Every import of a project module by a project module."""
  modules = module_files(root, packages)
  found = []
  for module, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" for alias in node.names]
      for name in names:
        imported = _resolve(name, modules)
        if imported is not None and imported != module:
          found.append(Import(module, imported, path, node.lineno))
  return found


def layers_of(module: str, layers=LAYERS) -> List[int]:
  """Indices in `layers` of the layers one of whose patterns matches `module`."""
  return [index for index, (_, patterns) in enumerate(layers)
          if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns)]


def layer_of(module: str, layers=LAYERS) -> Optional[int]:
  """The index in `layers` of `module`'s layer; None unless exactly one matches."""
  found = layers_of(module, layers)
  return found[0] if len(found) == 1 else None


def _cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
  """One cycle of `graph` (a list starting and ending with the same node), or None."""
  state: Dict[str, int] = {}  # 1: on the current path, 2: done
  path: List[str] = []

  def visit(node: str) -> Optional[List[str]]:
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def check(root: str = ".", packages: Sequence[str] = PACKAGES, layers=LAYERS) -> List[str]:
  """The violations of the three rules (see the module docstring) under `root`, one line each."""
  found = imports(root, packages)
  problems = []
  for module in sorted(module_files(root, packages)):
    found_in = [layers[index][0] for index in layers_of(module, layers)]
    if len(found_in) != 1:
      problems.append(f"{module}: in {len(found_in)} layers {found_in} (place it in exactly one: "
                      f"padir/tools/check_layers.py LAYERS and docs/architecture.md)")
  for imp in found:
    low, high = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
    if low is not None and high is not None and high > low:
      problems.append(f"{imp.path}:{imp.line}: {imp.importer} (layer {layers[low][0]!r}) "
                      f"imports {imp.imported} (layer {layers[high][0]!r}, above it)")
  graph: Dict[str, Set[str]] = {}
  for imp in found:
    graph.setdefault(imp.importer, set()).add(imp.imported)
  cycle = _cycle(graph)
  if cycle:
    problems.append("import cycle between modules: " + " -> ".join(cycle))
  top = lambda module: module.partition(".")[0]
  package_graph: Dict[str, Set[str]] = {}
  first: Dict[Tuple[str, str], Import] = {}
  for imp in found:
    edge = (top(imp.importer), top(imp.imported))
    if edge[0] != edge[1]:
      package_graph.setdefault(edge[0], set()).add(edge[1])
      first.setdefault(edge, imp)
  cycle = _cycle(package_graph)
  if cycle:
    where = "; ".join(f"{first[a, b].path}:{first[a, b].line} ({first[a, b].importer} imports "
                      f"{first[a, b].imported})" for a, b in zip(cycle, cycle[1:]))
    problems.append("import cycle between packages " + " -> ".join(cycle) + ": " + where)
  return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  root = argv[0] if argv else os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  problems = check(root)
  for problem in problems:
    print(problem)
  if problems:
    print(f"{len(problems)} layering violation(s); the layers are in padir/tools/check_layers.py "
          f"and docs/architecture.md", file=sys.stderr)
    return 1
  print(f"layering ok: {len(module_files(root))} modules, "
        f"{' < '.join(name for name, _ in LAYERS)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
