"""Storage backends: one ``ChatStore`` contract, one module per implementation."""

from strangler.backends.base import ChatStore, Keyset, Page, StoreLimits, Table

__all__ = ["ChatStore", "Keyset", "Page", "StoreLimits", "Table"]
