"""The code's shape, checked: no import circle between our modules (lazy imports
inside functions included) and no function over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "service", "benchmarks")
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported(tree: ast.Module, name: str, modules: set[str]) -> set[str]:
    """Our modules that ``name`` imports anywhere in its body (``from a import b`` counts ``a.b``
    when that is a module, else ``a``)."""
    out = set()
    package = name if name in {module_name(ROOT / pkg / "__init__.py") for pkg in PACKAGES} else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in out if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle() -> None:
    trees = sources()
    modules = set(trees)
    graph = {name: imported(tree, name, modules) for name, tree in trees.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_checker_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_over_60_lines(package: str) -> None:
    long = [
        f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in sources().items()
        if name.split(".")[0] == package
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def runtime_imports(tree: ast.Module) -> set[str]:
    """Top-level names of every module ``tree`` imports, except under ``if TYPE_CHECKING:``."""
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}  # fmt: skip
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


TORCH_ROOMS = {"service.model_runner", "service.cuda_memory"}
"""The service modules that may run torch: the model runner (every forward pass) and the GPU's memory share."""


def test_the_product_never_imports_the_benchmarks() -> None:
    trees = sources()
    offenders = [name for name, tree in trees.items() if name.split(".")[0] in ("service", "models")
                 and "benchmarks" in {m.split(".")[0] for m in imported(tree, name, set(trees))}]  # fmt: skip
    assert not offenders, offenders


def test_every_forward_pass_goes_through_the_model_runner() -> None:
    trees = {name: tree for name, tree in sources().items() if name.split(".")[0] == "service"}
    with_torch = sorted(name for name, tree in trees.items() if "torch" in runtime_imports(tree))
    assert set(with_torch) <= TORCH_ROOMS, with_torch
    forwards = ("encode", "decode", "code", "decode_logits", "label_probs", "order_logits_and_code")
    calls = sorted(
        f"{name}: {ast.unparse(node)[:60]}"
        for name, tree in trees.items()
        if name not in TORCH_ROOMS
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in forwards
        and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "model"
    )  # fmt: skip
    assert not calls, calls  # ``something.model.encode(...)``: a forward pass beside the runner
    hallucinators = sorted(name for name, tree in trees.items() if "models.hallucination.hallucinate" in {
        f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names})  # fmt: skip
    assert hallucinators == ["service.model_runner"], hallucinators


def test_no_service_module_imports_both_fastapi_and_torch() -> None:
    both = [name for name, tree in sources().items() if name.split(".")[0] == "service"
            and {"torch"} <= runtime_imports(tree) and runtime_imports(tree) & {"fastapi", "starlette"}]  # fmt: skip
    assert not both, both


def test_no_service_file_over_300_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "service").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 300}  # fmt: skip
    assert not long, long
