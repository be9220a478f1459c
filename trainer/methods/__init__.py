"""One module per method; the engine knows none by name."""
from .base import METHODS, Method, build_method, method_class
from . import baseline, cal, threedsl  # noqa: F401,E402  (register)

__all__ = ["METHODS", "Method", "build_method", "method_class"]
