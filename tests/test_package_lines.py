"""Package lines: the library's sub-packages import only the steps before them, the library imports
neither the flows nor the command line, and the pipeline does not import the development stack."""

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
            if module != "ser_tasks.runtime.devstack":
                assert not {n for n in names if n.startswith("ser_tasks.runtime.devstack")}, module


def test_the_normalizer_lives_with_the_models_not_the_data_feed():
    from ser_tasks.learn import data, models

    assert hasattr(models, "Normalizer") and not hasattr(data, "Normalizer")


def test_comparing_runs_loads_no_deep_learning_framework():
    """``ser compare`` reads MLflow: importing Keras would print TensorFlow's C++ banner into its table."""
    import subprocess
    import sys

    code = ("import sys, ser_tasks.serve.compare; "
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


#: The library's steps in data-flow order: a module imports only its own step, earlier ones and the
#: shared modules at the top of the package (errors, config, emotions, remote, zoo).
LAYERS = ("corpus", "signal", "store", "learn", "serve", "runtime")
SHARED = ("errors", "config", "emotions", "remote", "zoo")


def layer_of(module: str) -> int:
    """-1 for the package and its shared modules, else the index of the module's step in :data:`LAYERS`."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in SHARED + ("__init__",):
        return -1
    assert parts[1] in LAYERS, f"{module} is in no step of the data flow"
    return LAYERS.index(parts[1])


def test_every_library_module_imports_only_its_own_or_earlier_steps():
    modules = {m.removesuffix(".__init__") for m in imported_modules("ser_tasks")}
    for module, names in imported_modules("ser_tasks").items():
        module = module.removesuffix(".__init__")
        for name in names:
            target = name if name in modules else name.rpartition(".")[0]
            if target in modules and target.count(".") >= 1:
                assert layer_of(target) <= layer_of(module), f"{module} imports {name}, a later step"


def test_the_top_of_the_library_is_its_steps_and_the_shared_modules():
    top = {p.stem for p in (ROOT / "ser_tasks").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert top == {"__init__", *SHARED, *LAYERS}


def test_no_module_name_is_used_twice_in_the_library_and_the_flows():
    seen: dict[str, str] = {}
    for package in ("ser_tasks", "flows", "ser_cli"):
        for path in (ROOT / package).rglob("*.py"):
            if path.stem == "__init__":
                continue
            rel = str(path.relative_to(ROOT))
            assert path.stem not in seen, f"{rel} and {seen.get(path.stem)} share a name"
            seen[path.stem] = rel
    packages = [p.name for p in (ROOT / "ser_tasks").rglob("*") if (p / "__init__.py").exists()]
    assert len(packages) == len(set(packages)) and not set(packages) & set(seen), packages


def test_a_model_registered_before_the_move_still_finds_its_class_under_the_old_name(tmp_path):
    """A version logged before the sub-packages runs its own copy of model_code.py, which imports
    ``ser_tasks.predict``: the old name is the new module (one class, not a copy), with a warning."""
    import subprocess
    import sys

    code = ("import warnings, sys\n"
            "warnings.simplefilter('error')\n"
            "try:\n"
            "    from ser_tasks.predict import EmotionModel\n"
            "except DeprecationWarning as e:\n"
            "    print(e)\n"
            "warnings.simplefilter('ignore')\n"
            "from ser_tasks.predict import EmotionModel\n"
            "import ser_tasks.serve.predict as new, ser_tasks.train as old_train\n"
            "print(EmotionModel is new.EmotionModel, sys.modules['ser_tasks.predict'] is new,"
            " old_train.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["ser_tasks.predict moved to ser_tasks.serve.predict",
                                          "True True ser_tasks.learn.training"]
