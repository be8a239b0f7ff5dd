"""Package lines: the library imports neither the flows nor the command line, and the pipeline
does not import the development stack."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Absolute names each module of ``package`` imports (relative imports resolved)."""
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative to the module's package (its folder, for __init__ too)
                    base = parts[:-1][:len(parts) - node.level]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                names |= {module} | {f"{module}.{a.name}" for a in node.names}
        out[".".join(parts)] = names
    return out


def test_the_library_imports_neither_flows_nor_the_command_line():
    for module, names in imported_modules("ser_tasks").items():
        bad = {n for n in names if n.split(".")[0] in ("flows", "ser_cli")}
        assert not bad, f"{module} imports {bad}"


def test_flows_do_not_import_the_command_line_and_the_pipeline_not_the_devstack():
    for package in ("ser_tasks", "flows"):
        for module, names in imported_modules(package).items():
            assert not {n for n in names if n.startswith("ser_cli")}, module
            if module != "ser_tasks.devstack":
                assert not {n for n in names if n.startswith("ser_tasks.devstack")}, module


def test_the_normalizer_lives_with_the_models_not_the_data_feed():
    from ser_tasks import data, models

    assert hasattr(models, "Normalizer") and not hasattr(data, "Normalizer")


def test_comparing_runs_loads_no_deep_learning_framework():
    """``ser compare`` reads MLflow: importing Keras would print TensorFlow's C++ banner into its table."""
    import subprocess
    import sys

    code = ("import sys, ser_tasks.compare; "
            "sys.exit(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules) or 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_library_has_no_import_cycle_not_even_through_imports_inside_functions():
    """Module imports inside functions count too: they hide a cycle, they do not break it."""
    graph = {}
    modules = {m.removesuffix(".__init__") for m in imported_modules("ser_tasks")}
    for module, names in imported_modules("ser_tasks").items():
        module = module.removesuffix(".__init__")
        graph[module] = {n for n in names if n in modules and n != module and not module.startswith(n + ".")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path[path.index(nxt):], nxt])
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
