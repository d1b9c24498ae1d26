"""The core stays light (no Flax, Orbax, TFDS or Grain) and draws a public line (``__all__``)."""

import importlib
import subprocess
import sys

import pytest


def test_the_core_imports_no_engine_dependencies():
    code = (
        "import sys, jaxprune, jaxprune.lottery, jaxprune.transforms, jaxprune.analysis\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}"
        " & {'flax', 'orbax', 'tensorflow_datasets', 'grain', 'tensorflow'})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the core imported {out.stdout.strip()}"


PUBLIC_CORE = (
    "jaxprune",
    "jaxprune.analysis",
    "jaxprune.distributions",
    "jaxprune.export",
    "jaxprune.filters",
    "jaxprune.init_pruning",
    "jaxprune.lottery",
    "jaxprune.masks",
    "jaxprune.placement",
    "jaxprune.rebasin",
    "jaxprune.schedules",
    "jaxprune.scores",
    "jaxprune.select",
    "jaxprune.structured",
    "jaxprune.tickets",
    "jaxprune.typing",
)


@pytest.mark.parametrize("name", PUBLIC_CORE)
def test_every_public_core_module_lists_its_api(name):
    module = importlib.import_module(name)
    for public in module.__all__:
        assert not public.startswith("_") and hasattr(module, public), (name, public)
    # A helper is private: no check_*, path or stand-in helpers in the API.
    assert not [n for n in module.__all__ if n.startswith("check_") and n != "check_mask"]


@pytest.mark.parametrize(
    "module, old, new",
    [
        ("jaxprune.lottery", "random_pruning", "jaxprune.select._topk:random_like"),
        ("jaxprune.placement", "replicated", "jaxprune.placement:_replicated"),
        ("jaxprune.distributions", "erk_counts", "jaxprune._counts:erk_counts"),
        ("jaxprune.distributions", "plan", "jaxprune._counts:plan"),
        ("jaxprune.distributions", "concrete", "jaxprune._checks:concrete"),
        ("jaxprune.distributions", "check_sparsity", "jaxprune._checks:check_sparsity"),
        ("jaxprune.scores", "synflow_raw", "jaxprune._scoring:synflow_raw"),
        ("jaxprune.scores", "check_scores", "jaxprune._scoring:check_scores"),
        ("jaxprune.select", "order_keys", "jaxprune.select._keys:order_keys"),
        ("jaxprune.select", "plan_groups", "jaxprune.select._plan:plan_groups"),
        ("jaxprune.init_pruning", "kept_schedule", "jaxprune.init_pruning:_kept_schedule"),
    ],
)
def test_a_moved_name_still_works_with_a_deprecation_warning(module, old, new):
    where, attr = new.split(":")
    with pytest.warns(DeprecationWarning, match=f"{module}.{old} is deprecated"):
        got = getattr(importlib.import_module(module), old)
    assert got is getattr(importlib.import_module(where), attr)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        importlib.import_module(module).no_such_name  # noqa: B018


# The house (DESIGN.md): each part imports only the parts below it. A new module must
# be placed here, so that the test sees it.
LAYERS = (
    ("typing", "_deprecation", "_checks", "_fastpath"),
    ("filters", "placement"),
    ("_tree", "_counts"),
    ("masks", "_scoring"),
    ("scores", "distributions", "select", "schedules", "export"),
    ("transforms",),
    ("init_pruning", "lottery", "analysis"),
    ("tickets",),
    ("rebasin",),
    ("structured",),
    ("jaxprune",),  # the flat public API
    ("models", "data"),
    ("plots",),
    ("train",),
)


def _imports() -> dict[str, set[str]]:
    """The parts each part of the package imports (lazy imports in functions included)."""
    import ast
    import pathlib

    import jaxprune

    root = pathlib.Path(jaxprune.__file__).parent
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("").parts
        part = "jaxprune" if rel == ("__init__",) else rel[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "jaxprune":
                names = [f"jaxprune.{a.name}" for a in node.names]  # from jaxprune import x
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("jaxprune.") and name != "jaxprune.":
                    found.setdefault(part, set()).add(name.split(".")[1])
                elif name == "jaxprune":
                    found.setdefault(part, set()).add("jaxprune")
    return found


def test_the_house_has_no_upward_arrow():
    rank = {part: i for i, layer in enumerate(LAYERS) for part in layer}
    imports = _imports()
    unplaced = sorted((set(imports) | {p for ps in imports.values() for p in ps}) - set(rank))
    assert not unplaced, f"place {unplaced} in LAYERS (tests/test_layering.py)"
    upward = sorted(
        f"{a} -> {b}" for a, bs in imports.items() for b in bs if a != b and rank[b] >= rank[a]
    )
    assert not upward, f"imports against the house: {upward}"
