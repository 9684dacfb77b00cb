"""The import order of docs/design.md, enforced: every import under ``src/optlaw/`` goes down, never up or around.

Imports are read from the source (``ast``), so an import inside a function counts as much
as one at the top of a module: laziness saves start-up time, it does not make a dependency
go away. Only imports under ``if TYPE_CHECKING:`` are left out (they never run). A call of
``importlib.import_module`` with a literal ``"optlaw...."`` name counts as an import too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Bottom to top (docs/design.md, "Import order"). A module may import from its own stage
# and from the stages below it.
ORDER = ("shared", "models", "data", "optim", "train", "sweep", "fit", "report", "proxy", "entry")
# optlaw/<name>.py or optlaw/<name>/ modules that every stage may use.
SHARED = frozenset({"errors", "jsonio", "records", "config", "machine"})
# Stages that sit one above the other but never import each other (docs/design.md):
# - report draws what it is given (a fit result, by duck typing): a fit never needs a
#   report and a report never refits;
# - proxy tasks need none of the LLM stack (models, data, train, sweep); what combines the
#   two, such as the activation spectrum of an LLM run, lives in the entry layer.
APART = (frozenset({"fit", "report"}),
         *(frozenset({"proxy", stage}) for stage in ("models", "data", "train", "sweep")))

# Imports that break the order today and are being removed on another branch of the same
# round. Each entry says who removes it; the list must be empty once the round is merged.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
}


@dataclass(frozen=True)
class Import:
    source: str   # importing module, e.g. optlaw.sweep.grid
    target: str   # imported module, e.g. optlaw.train.identity
    line: int


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str:
    """The stage a module of the package belongs to; a module outside every stage is a failure."""
    parts = module.split(".")
    if parts == ["optlaw"]:
        return "shared"
    if parts[:2] == ["optlaw", "__main__"]:
        return "entry"
    top = parts[1]
    if top in SHARED:
        return "shared"
    if top in ORDER:
        return top
    raise AssertionError(f"{module} belongs to no stage: put it in one, or add it to SHARED/ORDER and docs/design.md")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: ``if TYPE_CHECKING:`` bodies are skipped (their ``else`` is kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            stack.append(node.test)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(target: str, known: set[str]) -> str:
    """The most specific module of the package a dotted name imports (``optlaw.fit.laws.fit_shared`` -> ``optlaw.fit.laws``)."""
    parts = target.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> list[Import]:
    """The ``optlaw`` modules one module's source imports at run time, each resolved to a module of ``known``."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from optlaw.proxy import point` imports the module optlaw.proxy.point.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names = [node.args[0].value]
        for name in names:
            if name == "optlaw" or name.startswith("optlaw."):
                target = _resolve(name, known)
                if target and target != module:
                    found.append(Import(module, target, node.lineno))
    return found


def package_imports(src: Path) -> list[Import]:
    files = sorted((src / "optlaw").rglob("*.py"))
    names = {module_name(path, src): path for path in files}
    known = set(names)
    found = []
    for name, path in names.items():
        found += imports_of(path.read_text(), name, path.name == "__init__.py", known)
    return found


def order_violations(found: list[Import], known_violations: dict = KNOWN_VIOLATIONS) -> list[str]:
    """One line for every import that goes up the order, or between stages kept apart."""
    problems = []
    for imp in found:
        if (imp.source, imp.target) in known_violations:
            continue
        low, high = stage_of(imp.source), stage_of(imp.target)
        if ORDER.index(high) > ORDER.index(low):
            problems.append(f"{imp.source} (line {imp.line}, stage {low}) imports {imp.target} from stage {high}, "
                            "which sits above it")
        elif low != high and frozenset({low, high}) in APART:
            problems.append(f"{imp.source} (line {imp.line}) imports {imp.target}: {low} and {high} never import "
                            "each other")
    return problems


def import_cycles(found: list[Import]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan's algorithm), as a sorted list."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        # Recursion depth is bounded by the module count (about 100).
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


# --------------------------------------------------------------------------------------
# The package as it is


def test_every_module_belongs_to_a_stage():
    for path in sorted((SRC / "optlaw").rglob("*.py")):
        stage_of(module_name(path, SRC))


def test_every_import_follows_the_documented_order():
    problems = order_violations(package_imports(SRC))
    assert not problems, "imports that go up the order of docs/design.md:\n" + "\n".join(problems)


def test_no_module_import_cycles():
    cycles = import_cycles(package_imports(SRC))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_known_violations_still_exist():
    # An entry whose import is gone must leave the list, so the list never hides a new one.
    found = {(imp.source, imp.target) for imp in package_imports(SRC)}
    stale = [pair for pair in KNOWN_VIOLATIONS if pair not in found]
    assert not stale, f"remove these from KNOWN_VIOLATIONS, they no longer exist: {stale}"


def test_the_documented_order_is_the_one_enforced():
    design = (SRC.parent / "docs" / "design.md").read_text()
    assert " -> ".join(ORDER) in design, "docs/design.md must state the order this test enforces"


def readme_file_map(readme: str) -> set[str]:
    """The paths the README's annotated file tree (section "Layout") names, e.g. ``optlaw/sweep/grid.py``."""
    section = readme.split("\n## Layout\n", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    stack = [lines[0].strip().rstrip("/").removeprefix("src/")]
    paths = set()
    for line in lines[1:]:
        prefix, _, rest = line.partition("── ")
        depth = len(prefix) // 4  # "├── " at depth 0, "│   ├── " at depth 1
        name = rest.split()[0]
        del stack[depth + 1:]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        else:
            paths.add("/".join([*stack, name]))
    return paths


def test_the_readme_file_map_names_every_module_and_only_those():
    named = readme_file_map((SRC.parent / "README.md").read_text())
    present = {str(path.relative_to(SRC)) for path in (SRC / "optlaw").rglob("*.py")}
    assert named == present, f"README.md Layout: missing {sorted(present - named)}, gone {sorted(named - present)}"


def test_the_documented_order_is_the_one_in_the_readme():
    assert " -> ".join(ORDER) in (SRC.parent / "README.md").read_text()


def test_nothing_imports_the_entry_layer():
    users = [imp for imp in package_imports(SRC) if stage_of(imp.target) == "entry" and stage_of(imp.source) != "entry"]
    assert not users, users


# --------------------------------------------------------------------------------------
# The checker itself fails on a violation


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "optlaw" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


SYNTHETIC = {
    "__init__.py": "",
    "errors.py": "",
    "train/__init__.py": "",
    "train/trainer.py": "from optlaw.errors import UserError\n",
    "proxy/__init__.py": "",
    "proxy/point.py": "",
    "entry/__init__.py": "",
    "entry/points.py": "from optlaw.proxy import point\nfrom optlaw.train.trainer import train\n",
}


def test_checker_passes_a_tree_that_follows_the_order(tmp_path):
    found = package_imports(_write_tree(tmp_path, SYNTHETIC))
    assert {(i.source, i.target) for i in found} >= {("optlaw.entry.points", "optlaw.proxy.point"),
                                                      ("optlaw.entry.points", "optlaw.train.trainer")}
    assert order_violations(found, {}) == []
    assert import_cycles(found) == []


@pytest.mark.parametrize("importer, code", [
    ("train/identity.py", "from optlaw.proxy.point import run_label\n"),           # at module level
    ("train/identity.py", "def f():\n    from optlaw.proxy import point\n"),       # inside a function
    ("train/identity.py", "def f():\n    import optlaw.entry.points as p\n"),      # `import a.b as c`
    ("train/identity.py", "from ..proxy import point\n"),                          # relative
    ("train/identity.py", "import importlib\nm = importlib.import_module('optlaw.proxy.point')\n"),
    ("train/identity.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n"
                          "    from optlaw.proxy import point\n"),                  # the else branch runs
    ("errors.py", "from optlaw.train import trainer\n"),                           # shared piece above a stage
])
def test_checker_fails_on_an_upward_import(tmp_path, importer, code):
    found = package_imports(_write_tree(tmp_path, {**SYNTHETIC, importer: code}))
    problems = order_violations(found, {})
    assert len(problems) == 1 and "sits above it" in problems[0], problems


def test_checker_ignores_type_checking_imports(tmp_path):
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from optlaw.proxy.point import run\n"
    found = package_imports(_write_tree(tmp_path, {**SYNTHETIC, "train/identity.py": code}))
    assert order_violations(found, {}) == []


def test_checker_fails_on_stages_kept_apart(tmp_path):
    files = {**SYNTHETIC, "fit/__init__.py": "", "fit/laws.py": "", "report/__init__.py": "",
             "report/plots.py": "def f():\n    from optlaw.fit.laws import compute_optimal\n",
             "proxy/spectrum.py": "def f():\n    from optlaw.train.trainer import train\n"}
    found = package_imports(_write_tree(tmp_path, files))
    problems = order_violations(found, {})
    assert len(problems) == 2 and all("never import each other" in p for p in problems), problems
    assert order_violations(found, {("optlaw.report.plots", "optlaw.fit.laws"): "listed",
                                    ("optlaw.proxy.spectrum", "optlaw.train.trainer"): "listed"}) == []


def test_checker_fails_on_a_cycle_within_a_stage(tmp_path):
    files = {**SYNTHETIC, "proxy/rf_study.py": "def run():\n    from optlaw.proxy.rf_report import write\n",
             "proxy/rf_report.py": "from optlaw.proxy.rf_study import table\n"}
    found = package_imports(_write_tree(tmp_path, files))
    assert order_violations(found, {}) == []
    assert import_cycles(found) == [["optlaw.proxy.rf_report", "optlaw.proxy.rf_study"]]


def test_checker_fails_on_a_module_outside_every_stage(tmp_path):
    found = package_imports(_write_tree(tmp_path, {**SYNTHETIC, "point.py": "from optlaw import errors\n"}))
    with pytest.raises(AssertionError, match="belongs to no stage"):
        order_violations(found, {})
