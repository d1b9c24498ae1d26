"""Every ```python block of README.md and of the docs' Markdown pages runs as written.

Each block is self-contained (it builds its own tiny data, or loads MNIST-1D, which is
generated locally) and runs in a fresh namespace inside an empty working directory.
"""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    if not os.path.relpath(p, os.path.join(ROOT, "docs")).startswith(("_build", "notebooks"))
)
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: str) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file, with the line each starts on."""
    with open(path) as f:
        text = f.read()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = [
    pytest.param(path, line, code, id=f"{os.path.relpath(path, ROOT)}:{line}")
    for path in PAGES
    for line, code in python_blocks(path)
]


def test_the_pages_have_python_blocks():
    readme = os.path.join(ROOT, "README.md")
    assert any(path == readme for path, *_ in (b.values for b in BLOCKS))
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("path, line, code", BLOCKS)
def test_block_runs(path, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write run directories write them here
    name = f"{os.path.relpath(path, ROOT)}, line {line}"
    exec(compile(code, name, "exec"), {"__name__": "__main__"})
