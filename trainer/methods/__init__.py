"""One module per method; the engine knows none by name."""
from .base import METHODS, Method, build_method
from . import baseline, cal  # noqa: F401,E402  (register)

__all__ = ["METHODS", "Method", "build_method"]
