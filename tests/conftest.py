"""Test configuration: eight host devices, so sharding tests run on any CPU."""

import os

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

from hypothesis import settings  # noqa: E402

# Property tests compile JAX code per new shape: few, reproducible examples.
settings.register_profile(
    "jaxprune", max_examples=20, deadline=None, derandomize=True, print_blob=True
)
settings.load_profile("jaxprune")
