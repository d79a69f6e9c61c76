"""The layout keeps the architecture: data flows down the stages of ``rdm/`` only, with no import cycle
(module-level or inside functions), and no module or class grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RDM = ROOT / "rdm"
# Lowest first: a stage may import the stages before it, never one after (README: How the code is organised).
STAGES = ("errors", "common", "settings", "plan", "encoders", "db", "decompose", "generate", "ingest", "curation",
          "retrieve", "health", "runs", "study", "jobs", "cli")
SHARED_AT_TOP = {"__init__", "errors", "settings", "plan", "health"}
MAX_MODULE_LINES, MAX_CLASS_LINES = 400, 300


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(RDM.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every rdm module ``name`` imports, wherever the import stands; ``from pkg import mod`` is ``pkg.mod``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {owner(m) for m in found if m.split(".")[0] == "rdm"} - {name, None}


def owner(name: str) -> str | None:
    """The module that defines ``name`` (an imported attribute's module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def stage(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "errors"  # ``rdm`` itself holds only __version__


def test_no_import_cycle_in_rdm():
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            assert state.get(other) != "open", "import cycle: " + " -> ".join(trail + [name, other])
            if other not in state:
                visit(other, trail + [name])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [])


def test_data_flows_down_the_stages():
    upward = [f"{name} imports {other}" for name in MODULES for other in imports_of(name)
              if STAGES.index(stage(other)) > STAGES.index(stage(name))]
    assert not upward, upward


def test_every_stage_is_a_package_and_few_modules_lie_at_the_top():
    top = {p.stem for p in RDM.glob("*.py")}
    assert top <= SHARED_AT_TOP, f"loose at rdm/'s top: {sorted(top - SHARED_AT_TOP)}"
    packages = {p.name for p in RDM.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(STAGES) - SHARED_AT_TOP
    for package in packages:
        assert ast.get_docstring(ast.parse((RDM / package / "__init__.py").read_text())), package


def test_no_module_or_class_too_long_to_read():
    files = [*RDM.rglob("*.py"), *(ROOT / "dashboard").glob("*.py"), *(ROOT / "pages").glob("*.py")]
    long_modules = [f"{p.relative_to(ROOT)}: {n}" for p in files if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    long_classes = [f"{p.relative_to(ROOT)}:{node.name}" for p in files for node in ast.walk(ast.parse(p.read_text()))
                    if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= MAX_CLASS_LINES]
    assert not long_modules and not long_classes, (long_modules, long_classes)


def test_tests_mirror_the_packages():
    loose = sorted(p.name for p in (ROOT / "tests").glob("test_*.py"))
    assert not loose, f"test files loose at tests/'s top: {loose}"
