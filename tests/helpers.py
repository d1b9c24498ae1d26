"""Small helpers shared by tests: crashes on purpose."""

from jaxprune.data import batches


class Crash(Exception):
    """Stands in for a crash at a chosen step."""


def crashing_at(step):
    """A `batches` replacement that raises `Crash` before yielding batch number `step`."""
    seen = [0]

    def crashing(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            if seen[0] == step:
                raise Crash(f"crash before step {step + 1}")
            seen[0] += 1
            yield batch

    return crashing
