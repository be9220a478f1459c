"""ccreid training: data, samplers, models, losses, methods, engine, evaluation.

The notebook API (trainer/api.py) is exported here lazily — `from trainer import load_model, evaluate_retrieval,
store_record` — so that importing trainer.config (as the workflow does while it plans) does not load torch. (Not
`evaluate`: that name is the trainer.evaluate program's module.)"""
from pipeline import __version__  # noqa: F401  (one version for both packages: pyproject.toml)

_API = ("TrainedModel", "evaluate_retrieval", "load_model", "store_record")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
