"""A facade under write load, for the SIGKILL test: prints one JSON line per acknowledged write.

python -m tests.proxy._writer MONGO_URI MONGO_DB PG_DSN STAGE
"""

from __future__ import annotations

import asyncio
import json
import sys

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core.models import ChatSession, Message
from strangler.proxy import FacadeOptions, Stage
from strangler.runtime import assemble


async def main(mongo_uri: str, db: str, dsn: str, stage: str) -> None:
    async with (
        MongoStore(mongo_uri, database=db) as old,
        PostgresStore(dsn) as new,
        assemble(old, new, FacadeOptions(stage=Stage.parse(stage))) as facade,
    ):
        print(json.dumps({"ready": True}), flush=True)
        i = 0
        while True:
            s = await facade.create_session(ChatSession.new(title=f"k{i}", user_id="kill"))
            print(json.dumps({"session": str(s.id)}), flush=True)
            m = await facade.add_message(
                Message.new(
                    session_id=s.id, sender="user", content={"type": "conversation", "text": str(i)}
                )
            )
            print(json.dumps({"message": str(m.id)}), flush=True)
            i += 1


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
