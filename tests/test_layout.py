"""The three floors: the library (genseq/) knows no task and no front end, the task floor (genseq.tasks,
genseq.plugins, genseq.commands and the task packages under plugins/) knows no front end, and every import
points down. Read from the source, so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASK_FLOOR = {"genseq.tasks", "genseq.plugins", "genseq.commands"}
FRONT_ENDS = ("genseq.cli", "genseq_web", "genseq.__main__")
TASK_PACKAGES = tuple(path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").exists())
HARNESS = {"genseq.testing"}  # checks a task through the front ends, for a plugin's tests: above every floor


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / ("plugins" if path.is_relative_to(ROOT / "plugins") else "")).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module path imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import tasks` names a module
    return found


def within(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def modules(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.py") if "models" not in path.parts)


LIBRARY = [path for path in modules(ROOT / "genseq")
           if not within(module_name(path), (*TASK_FLOOR, *FRONT_ENDS, *HARNESS))]
TASKS = [ROOT / "genseq" / "tasks.py", ROOT / "genseq" / "plugins.py", ROOT / "genseq" / "commands.py",
         *modules(ROOT / "plugins")]


def test_the_floors_hold_the_modules_a_newcomer_expects():
    names = {module_name(path) for path in LIBRARY}
    assert {"genseq.model", "genseq.runs", "genseq.checkpoint", "genseq.generation.engine"} <= names
    assert {"genseq_completion", "genseq_captioning", "genseq_sentiment", "genseq_lab"} <= set(TASK_PACKAGES)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda path: module_name(path))
def test_the_library_imports_no_task_and_no_front_end(path):
    upward = sorted(name for name in imported(path) if within(name, (*TASK_FLOOR, *FRONT_ENDS, *HARNESS, *TASK_PACKAGES)))
    assert not upward, f"{module_name(path)} (library) imports {upward}"


@pytest.mark.parametrize("path", TASKS, ids=lambda path: module_name(path))
def test_the_task_floor_imports_no_front_end(path):
    upward = sorted(name for name in imported(path) if within(name, (*FRONT_ENDS, *HARNESS)))
    assert not upward, f"{module_name(path)} (task floor) imports {upward}"


@pytest.mark.parametrize("path", [*modules(ROOT / "genseq" / "cli"), *modules(ROOT / "apps" / "genseq_web")],
                         ids=lambda path: module_name(path))
def test_the_front_ends_do_not_import_each_other_but_serve_starts_the_app(path):
    name = module_name(path)
    other = "genseq_web" if name.startswith("genseq.cli") else "genseq.cli"
    crossing = sorted(found for found in imported(path) if within(found, (other,)))
    assert crossing == (["genseq_web"] if name == "genseq.cli.serve" else []), f"{name} imports {crossing}"


def strings_in_code(path: Path) -> set[str]:
    """The string constants of a module's code, its docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, documented)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


@pytest.mark.parametrize("path", modules(ROOT / "apps" / "genseq_web"), ids=lambda path: path.name)
def test_the_web_app_names_no_task(path):
    tasks = {"completion", "captioning", "sentiment", "gates", "gradients", "prompt", "suggest", "attention_map"}
    named = sorted(tasks.intersection(strings_in_code(path)))
    assert not named, f"{path.name} names {named}: what a task is belongs in its declaration"
