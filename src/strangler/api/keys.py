"""Typed application state (``web.AppKey``): what handlers may take from ``request.app``.

Each part of the runtime (``strangler.runtime.Runtime``) has its own key, so a handler
names exactly what it uses instead of reaching through the facade.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from strangler.api.auth import Authenticator
from strangler.api.events import Hub
from strangler.api.invalidation import PageInvalidation
from strangler.api.jobs import VerifyJobs
from strangler.api.owners import Owners
from strangler.api.page_cache import PageCache
from strangler.config import Settings
from strangler.core.ports import DivergenceLog, FollowerState, JobRuns, Quotas, StageStore
from strangler.proxy.control import StageController
from strangler.proxy.facade import DualWriteStore
from strangler.proxy.follower import Follower
from strangler.proxy.metrics import FacadeMetrics

SETTINGS = web.AppKey("settings", Settings)
AUTH = web.AppKey("auth", Authenticator)

# The runtime's parts (set when the app starts).
FACADE = web.AppKey("facade", DualWriteStore)
CONTROLLER = web.AppKey("stage_controller", StageController)
METRICS = web.AppKey("metrics", FacadeMetrics)
# Protocols cannot be passed as the key's type, so these name it as a type argument.
STAGES = web.AppKey[StageStore]("stages")
DIVERGENCES = web.AppKey[DivergenceLog]("divergences")
RUNS = web.AppKey[JobRuns]("job_runs")
QUOTAS = web.AppKey[Quotas]("quotas")
FOLLOWING = web.AppKey[tuple[Follower, ...]]("following")
#: The rollout guard's view on this instance (``proxy.guard.Guard.state``), if it runs.
GUARD = web.AppKey[dict[str, Any]]("guard")
FOLLOWER_STATE = web.AppKey[FollowerState]("follower_state")

HUB = web.AppKey("hub", Hub)
#: Set when realtime cannot work here (Supabase's REST API alone): why, and how to enable it.
REALTIME_OFF = web.AppKey("realtime_off", str)
JOBS = web.AppKey("verify_jobs", VerifyJobs)
OWNERS = web.AppKey("owners", Owners)
HISTORY_CACHE = web.AppKey("history_cache", PageCache)
SESSION_LIST_CACHE = web.AppKey("session_list_cache", PageCache)
INVALIDATION = web.AppKey("page_invalidation", PageInvalidation)
