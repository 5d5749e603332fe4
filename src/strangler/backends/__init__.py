"""Storage backends: one ``ChatStore`` contract, one module per implementation."""

from strangler.core.ports import ChatStore
from strangler.core.records import Keyset, Page, StoreLimits, Table

__all__ = ["ChatStore", "Keyset", "Page", "StoreLimits", "Table"]
