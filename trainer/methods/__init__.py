"""One module per method; the engine knows none by name."""
from . import baseline, cal, cre_bsga, deskpro, threedsl  # noqa: F401,E402  (register)
from .base import METHODS, Method, build_method, method_class

__all__ = ["METHODS", "Method", "build_method", "method_class"]
