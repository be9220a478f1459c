"""ccreid training: data, samplers, models, losses, methods, engine, evaluation."""
__version__ = "0.1.0"
