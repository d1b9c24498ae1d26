"""jaxprune: neural-network sparsity research in JAX."""

__version__ = "0.1.0"
