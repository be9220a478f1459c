"""ccreid preprocessing: dataset adapters, list files, the image pack and stage backends."""
from ._version import project_version

__version__ = project_version()
