"""strangler: a dual-write strangler proxy that moves a live chat app from MongoDB to Supabase."""

__version__ = "0.1.0"


def connect(settings: object) -> object:
    """``async with strangler.connect(Settings()) as store``: the staged dual-write facade.

    See ``strangler.proxy.connect``; imported lazily so ``import strangler`` stays light.
    """
    from strangler.proxy.wiring import connect as _connect

    return _connect(settings)  # type: ignore[arg-type]
