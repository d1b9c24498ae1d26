"""The documentation site builds offline with warnings as errors, and its API pages
list exactly each public module's ``__all__``."""

import fcntl
import importlib
import inspect
import os
import posixpath
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
API = os.path.join(DOCS, "api")

# The modules with an API page: one ``automodule`` page each under docs/api/.
PUBLIC_MODULES = sorted(n[: -len(".rst")] for n in os.listdir(API) if n != "index.rst")


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> str:
    """Builds the HTML site once per test run (about 10 s) and returns its directory.

    The xdist workers of one run share the build: the first builds it under a lock.
    """
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's directory, above every worker's own
    out = root / "docs-html"
    with open(root / "docs-html.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "objects.inv").exists():
            cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
            proc = subprocess.run([*cmd, DOCS, str(out)], cwd=ROOT, capture_output=True, text=True)
            assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    return str(out)


def _inventory(built: str) -> dict[str, dict]:
    from sphinx.util.inventory import InventoryFile

    with open(os.path.join(built, "objects.inv"), "rb") as f:
        return InventoryFile.load(f, "", posixpath.join)


def test_docs_build_offline_without_warnings(built):
    for page in ("index", "getting_started", "api/jaxprune", "notebooks/quickstart"):
        assert os.path.exists(os.path.join(built, f"{page}.html")), page
    with open(os.path.join(DOCS, "conf.py")) as f:
        assert "sphinx.ext.intersphinx" not in f.read()  # nothing fetched


def test_api_pages_cover_the_public_modules():
    expected = {
        "jaxprune",
        "jaxprune.analysis",
        "jaxprune.data",
        "jaxprune.distributions",
        "jaxprune.export",
        "jaxprune.filters",
        "jaxprune.init_pruning",
        "jaxprune.lottery",
        "jaxprune.masks",
        "jaxprune.models",
        "jaxprune.plots",
        "jaxprune.rebasin",
        "jaxprune.schedules",
        "jaxprune.scores",
        "jaxprune.select",
        "jaxprune.structured",
        "jaxprune.tickets",
        "jaxprune.train",
        "jaxprune.train.data_scores",
        "jaxprune.transforms",
        "jaxprune.typing",
    }
    assert expected <= set(PUBLIC_MODULES)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_documented_api_equals_all(built, name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} is public: give it an __all__."
    inventory = _inventory(built)
    prefix = f"{name}."
    documented = {
        entry[len(prefix) :]
        for kind, entries in inventory.items()
        if kind.startswith("py:") and kind != "py:module"
        for entry in entries
        if entry.startswith(prefix) and "." not in entry[len(prefix) :]
    }
    modules = {n for n in module.__all__ if inspect.ismodule(getattr(module, n))}
    expected = set(module.__all__) - modules
    assert documented == expected, (
        f"{name}: documented but not in __all__: {sorted(documented - expected)}; "
        f"in __all__ but not documented: {sorted(expected - documented)}."
    )
    # Submodules in __all__ (jaxprune.scores...) have their own page.
    assert {f"{name}.{n}" for n in modules} <= set(inventory["py:module"])


NOTEBOOKS = sorted(
    os.path.join(ROOT, "colab", n)
    for n in os.listdir(os.path.join(ROOT, "colab"))
    if n.endswith(".ipynb")
)


def _notebook(path: str) -> dict:
    import json

    with open(path) as f:
        return json.load(f)


def _install_cell(nb: dict) -> str:
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    return "".join(cells[0]["source"])


def test_notebooks_share_their_colab_metadata():
    metadata = [_notebook(p)["metadata"] for p in NOTEBOOKS]
    assert len(metadata) >= 4
    for path, md in zip(NOTEBOOKS, metadata):
        assert list(md) == list(metadata[0]), path
        assert (md["accelerator"], md["colab"]) == (
            metadata[0]["accelerator"],
            metadata[0]["colab"],
        )


def test_notebooks_install_from_one_address_with_the_tested_versions():
    import ast
    from importlib.metadata import version

    for path in NOTEBOOKS:
        nb = _notebook(path)
        cell = _install_cell(nb)
        assigned = {
            node.targets[0].id: ast.literal_eval(node.value)
            for node in ast.parse(cell).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }
        repo = assigned["REPO"]
        assert cell.count("https://") == 1, f"{path}: the address is set once, in REPO"
        assert "git+{REPO}@{REF}" in cell and 'find_spec("jaxprune") is None' in cell, path
        pins = dict(p.split("==") for p in assigned["TESTED"])
        assert pins == {n: version(n) for n in ("jax", "flax", "optax")}, path
        # The "Open in Colab" badge points into the same repository.
        badge = "".join(nb["cells"][0]["source"])
        owner_name = repo.removeprefix("https://github.com/")
        assert f"colab.research.google.com/github/{owner_name}/blob/" in badge, path
