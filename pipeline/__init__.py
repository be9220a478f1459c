"""ccreid preprocessing: dataset adapters, list files, the image pack and (later) stage backends."""
__version__ = "0.1.0"
