"""Elastik: the audited HTTP store (server in ``elastik.server``) and its Python SDK."""

__version__ = "0.1.0"
