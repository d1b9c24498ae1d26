"""Plain-text tables for the results' ``__str__``."""

from __future__ import annotations

from collections.abc import Sequence


def table(head: Sequence[str], rows: Sequence[Sequence[str]], total: Sequence[str]) -> str:
    """Columns padded to their widest cell (the first left-aligned, the rest right), a rule
    under the head and above the total row.

    Example:
      >>> print(table(("path", "n"), [("a", "1")], ("total", "1")))
      path   n
      -----  -
      a      1
      -----  -
      total  1
    """
    widths = [max(len(r[i]) for r in [head, *rows, total]) for i in range(len(head))]

    def fmt(row: Sequence[str]) -> str:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = fmt(["-" * w for w in widths])
    return "\n".join([fmt(head), rule, *map(fmt, rows), rule, fmt(total)])
