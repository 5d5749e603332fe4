"""Typed application state (``web.AppKey``): what handlers may take from ``request.app``."""

from __future__ import annotations

from aiohttp import web

from strangler.api.auth import Authenticator
from strangler.api.events import Hub
from strangler.api.jobs import VerifyJobs
from strangler.api.owners import Owners
from strangler.api.page_cache import PageCache
from strangler.config import Settings
from strangler.proxy.facade import DualWriteStore

SETTINGS = web.AppKey("settings", Settings)
FACADE = web.AppKey("facade", DualWriteStore)
AUTH = web.AppKey("auth", Authenticator)

HUB = web.AppKey("hub", Hub)
JOBS = web.AppKey("verify_jobs", VerifyJobs)
OWNERS = web.AppKey("owners", Owners)
HISTORY_CACHE = web.AppKey("history_cache", PageCache)
SESSION_LIST_CACHE = web.AppKey("session_list_cache", PageCache)
