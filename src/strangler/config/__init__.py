"""Typed settings (pydantic-settings) and the stores they select."""

from strangler.config.settings import Settings

__all__ = ["Settings"]
