"""The MongoDB backend (PyMongo's async client): the legacy store and its write journal."""

from strangler.backends.mongo.journal import MongoJournal
from strangler.backends.mongo.store import MongoStore

__all__ = ["MongoJournal", "MongoStore"]
