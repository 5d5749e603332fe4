"""The dual-write facade: a ``ChatStore`` over MongoDB and Supabase, routed by stage.

It imports no backend: ``strangler.runtime`` chooses the stores and control-plane ports
and hands them to ``build_facade``.
"""

from strangler.core.stages import Stage
from strangler.proxy.assembly import ControlPorts, FacadeOptions, build_facade
from strangler.proxy.facade import DualWriteStore

__all__ = ["ControlPorts", "DualWriteStore", "FacadeOptions", "Stage", "build_facade"]
