"""The chat backend's HTTP API on the facade (aiohttp): ``create_app(settings)``."""

from strangler.api.app import create_app

__all__ = ["create_app"]
