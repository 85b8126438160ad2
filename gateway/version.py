"""The release of Infer Mesh, shown by ``python gateway.py --version``."""

__version__ = "1.1.0"
