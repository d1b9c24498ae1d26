"""Test configuration: eight host devices, so sharding tests run on any CPU; quick
compilation."""

import os
import shutil
import subprocess
import sys
import tempfile

# Must happen before JAX initialises its backends; notebooks and subprocesses inherit it.
# Most of the suite's time is XLA compiling many small programs once each: without
# LLVM's optimisations that takes about a third less time. Results are compared with
# runs made under the same flags; speed is measured in benchmarks/, never here; the
# compiled-program checks of test_fastpath compile with the users' code generator.
flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
if "--xla_backend_optimization_level" not in flags:
    flags += " --xla_backend_optimization_level=0"
# XLA:CPU's older fusion code generator compiles about twice as fast, for slower
# programs (the transforms' and the selection's tests in one process: about half the
# CPU time). An unknown flag aborts XLA, so it is tried once in a subprocess,
# by the main process: the xdist workers inherit its XLA_FLAGS, flag or not.
FAST_CODEGEN = "--xla_cpu_use_fusion_emitters=false"
if "--xla_cpu_use_fusion_emitters" not in flags and "PYTEST_XDIST_WORKER" not in os.environ:
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env={**os.environ, "XLA_FLAGS": f"{flags} {FAST_CODEGEN}", "JAX_PLATFORMS": "cpu"},
        capture_output=True,
    )
    if probe.returncode == 0:
        flags += f" {FAST_CODEGEN}"
os.environ["XLA_FLAGS"] = flags.strip()

# One compilation cache for the whole run, on disk, shared by the workers, the
# subprocesses and the notebooks: a program compiled once (the same HLO, whichever
# function object or process asks for it) is loaded, not compiled again. It starts
# empty at every run (unless JAX_COMPILATION_CACHE_DIR is set) and is removed at the end.
OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxprune-tests-xla-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from hypothesis import settings  # noqa: E402

# Property tests compile JAX code per new shape: few, reproducible examples.
settings.register_profile(
    "jaxprune", max_examples=10, deadline=None, derandomize=True, print_blob=True
)
settings.load_profile("jaxprune")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: at least three workers, even on two cores (a worker waiting on a
    subprocess or on Python leaves a core idle: the 2-core Xeon VM's cores were 1.9
    rather than 1.8 busy over the run, 11.0-11.4 minutes), else one per core
    (``--maxprocesses`` caps it)."""
    return max(3, os.cpu_count() or 1)


def pytest_unconfigure(config):
    """Removes the run's compilation cache (the process that made it does)."""
    if OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
