"""Typed settings (pydantic-settings), built once at an entry point and passed down."""

from strangler.config.settings import Settings

__all__ = ["Settings"]
