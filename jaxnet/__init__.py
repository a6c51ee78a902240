"""jaxnet: feed-forward neural networks in JAX, as the document writes them."""

__version__ = "0.1.0"
