"""Canaries for the private parts of aiohttp and pydantic that strangler relies on.

``strangler/api/server.py`` subclasses aiohttp's ``RequestHandler`` and swaps a
``web.Server``'s ``__class__`` (the header deadline and the 431). ``strangler.core.models.trusted``
writes pydantic's per-instance state itself (the history hot path). pyproject.toml bounds
both dependencies to releases known to work. Each ``test_*_canary`` below exercises one
internal against the installed release. When the internal breaks, the test fails with a
message that names it, the code that needs updating and the known-good range.

A canary that cannot fail is a defect. ``test_a_canary_fails_on_a_simulated_breaking_release``
breaks each internal by monkeypatching it the way a new release plausibly would, and checks
that the matching canary fails and names the internal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import pickle
import re
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from pydantic import BaseModel

from strangler.api import server
from strangler.api.server import AIOHTTP_KNOWN_GOOD
from strangler.core.models import PYDANTIC_KNOWN_GOOD, ChatSession, Message, trusted

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
KNOWN_GOOD = {"aiohttp": AIOHTTP_KNOWN_GOOD, "pydantic": PYDANTIC_KNOWN_GOOD}

# The internals, as the canaries' messages name them.
MAKE_SERVER = "AppRunner._make_server (the hook that hands GuardedRunner its web.Server)"
SERVER_KWARGS = "web.Server._kwargs and RequestHandler(manager, *, loop, **kwargs)"
REQUEST_COUNT = "RequestHandler._request_count (request heads parsed on a connection)"
HANDLE_ERROR = "RequestHandler.handle_error and the parser's LineTooLong / BadHttpMessage"
SLOTS = "BaseModel's per-instance slots (__pydantic_fields_set__, _extra, _private)"
DICT = "field values kept in the instance __dict__ (compared, hashed, dumped from it)"

GUARDED_SERVER = "the guarded server in strangler/api/server.py"
TRUSTED = "strangler.core.models.trusted"


@contextlib.contextmanager
def canary(dependency: str, internal: str, code: str) -> Iterator[None]:
    """Turn any failure inside into one message: which internal broke and what to do."""
    try:
        yield
    except Exception as exc:  # whatever the new release does, the message says the same
        raise AssertionError(
            f"{dependency} {version(dependency)} does not provide {internal} the way {code} "
            f"relies on; the known-good range is {dependency}{KNOWN_GOOD[dependency]}. Install "
            f"a release in that range, or update {code} and then the bound (README, "
            f"'Dependencies'). What broke: {type(exc).__name__}: {exc}"
        ) from exc


# --- aiohttp ------------------------------------------------------------------------------


def _app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    return app


@contextlib.asynccontextmanager
async def serving(header_timeout: float = server.HEADER_TIMEOUT) -> AsyncIterator[int]:
    """strangler's guarded runner on a free loopback port; yields the port."""
    run = server.runner(_app(), header_timeout=header_timeout)
    await run.setup()
    try:
        await web.TCPSite(run, "127.0.0.1", 0).start()
        yield run.addresses[0][1]
    finally:
        await run.cleanup()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answer(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP answer: the head, then ``Content-Length`` bytes of body."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        return head + await reader.readexactly(length)


def status(raw: bytes) -> int:
    """The status code of a raw answer (HTTP/1.0 when the request did not parse)."""
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else 0


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def make_server_canary() -> None:
    """GuardedRunner overrides ``AppRunner._make_server`` to swap the ``web.Server`` it
    returns to ``GuardedServer``. If ``setup()`` stops calling it, the override is dead code
    and every guard is silently gone."""
    with canary("aiohttp", MAKE_SERVER, GUARDED_SERVER):
        run = server.runner(_app(), header_timeout=0.25)
        await run.setup()
        try:
            assert type(run.server) is server.GuardedServer, f"setup() built {run.server!r}"
            assert run.server.header_timeout == 0.25
        finally:
            await run.cleanup()


async def server_kwargs_canary() -> None:
    """``GuardedServer.__call__`` rebuilds ``web.Server.__call__`` with our handler class: it
    passes the runner's handler options from ``web.Server._kwargs`` to
    ``RequestHandler.__init__``. A rename of either, or an option the constructor no longer
    takes, would fail every connection."""
    with canary("aiohttp", SERVER_KWARGS, GUARDED_SERVER):
        run = server.runner(_app(), header_timeout=0.25)
        await run.setup()
        try:
            assert run.server is not None
            # runner()'s handler options are where GuardedServer reads them
            # (handle_error_canary shows they reach the parser)...
            options = run.server._kwargs
            assert options["max_headers"] == server.MAX_HEADERS, options
            assert options["keepalive_timeout"] == server.KEEPALIVE_TIMEOUT, options
            # ...and the handler's constructor takes them.
            handler = run.server()
            assert type(handler) is server.GuardedHandler, repr(handler)
            assert handler.header_timeout == 0.25
        finally:
            await run.cleanup()


async def request_count_canary() -> None:
    """The first-request deadline is cancelled once ``RequestHandler._request_count`` says a
    request head was parsed. It must count a served request (or a kept-alive connection is
    cut with 408) and must not count a head that never ends (or slowloris is back)."""
    with canary("aiohttp", REQUEST_COUNT, GUARDED_SERVER):
        async with serving(header_timeout=0.5) as port:
            async with connection(port) as (reader, writer):
                writer.write(GET)
                assert status(await answer(reader)) == 200, "first request"
                await asyncio.sleep(1.0)  # past the deadline, well within keep-alive
                writer.write(GET)
                again = await answer(reader)
                assert status(again) == 200, f"kept-alive request got {again!r}"
            async with connection(port) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                cut = await answer(reader)
                assert status(cut) == 408, f"an endless head got {cut!r}"


async def handle_error_canary() -> None:
    """``GuardedHandler.handle_error`` answers 431 when aiohttp's parser reports an oversized
    header as ``LineTooLong``, or too many headers as ``BadHttpMessage("Too many headers
    ...")``. If the hook's signature, the exception types or that message change, clients
    get aiohttp's 400 (and the log a traceback) instead. Before aiohttp 3.13.4 the server
    did not enforce ``max_headers`` at all: this canary fails on 3.13.3 (200, not 431)."""
    with canary("aiohttp", HANDLE_ERROR, GUARDED_SERVER):
        long_line = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(server.MAX_HEADERS + 10))
        too_many = b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
        async with serving() as port:
            for raw, what in ((long_line, "a long header"), (too_many, "too many headers")):
                async with connection(port) as (reader, writer):
                    writer.write(raw)
                    got = await answer(reader)
                assert status(got) == 431, f"{what} got {got[:200]!r}"
                assert b'"code":"headers_too_large"' in got


async def test_aiohttp_make_server_hook_canary() -> None:
    await make_server_canary()


async def test_aiohttp_server_kwargs_canary() -> None:
    await server_kwargs_canary()


async def test_aiohttp_request_count_canary() -> None:
    await request_count_canary()


async def test_aiohttp_handle_error_canary() -> None:
    await handle_error_canary()


# --- pydantic -----------------------------------------------------------------------------

SESSION_ID, MESSAGE_ID = uuid.uuid4(), uuid.uuid4()
WHEN = dt.datetime(2024, 3, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)


def rows() -> list[tuple[type[BaseModel], dict[str, Any], dict[str, Any]]]:
    """(model, the normalised values a store hands ``trusted``, the same as API input
    with the defaults left out)."""
    session = {"id": SESSION_ID, "title": "t", "created_at": WHEN, "user_id": "u"}
    message = {
        "id": MESSAGE_ID,
        "session_id": SESSION_ID,
        "sender": "user",
        "content": {"type": "conversation", "text": "hi"},
        "timestamp": WHEN,
        "audio": None,
        "image": None,
        "pdf": None,
    }
    raw_message = {k: v for k, v in message.items() if v is not None}
    return [(ChatSession, session, dict(session)), (Message, message, raw_message)]


async def slots_canary() -> None:
    """``trusted`` sets ``__pydantic_fields_set__``, ``__pydantic_extra__`` and
    ``__pydantic_private__`` through ``BaseModel``'s slot descriptors. Every slot a model
    has must then be set, to what validating the same values sets, or pydantic trips on the
    missing one later, far from here. (Not compared with ``model_construct``: on pydantic
    2.7 it raises ``TypeError`` for fields with ``AliasChoices``, as ours have.)"""
    with canary("pydantic", SLOTS, TRUSTED):
        for model, values, _ in rows():
            fast = trusted(model, dict(values))
            checked = model.model_validate(values)
            for name in BaseModel.__slots__:
                assert getattr(fast, name) == getattr(checked, name), name
            assert fast.model_fields_set == set(values)
            assert (fast.model_extra, fast.__pydantic_private__) == (None, None)


async def dict_canary() -> None:
    """``trusted`` hands its ``values`` to the instance as ``__dict__``. That works while
    pydantic keeps field values there and compares, hashes (frozen models), dumps, copies
    and pickles from it, so that a row a store read equals the same row validated: the
    facade's shadow comparison relies on it."""
    with canary("pydantic", DICT, TRUSTED):
        for model, values, raw in rows():
            fast = trusted(model, dict(values))
            checked = model.model_validate(raw)
            assert fast == checked
            if model is ChatSession:  # a Message holds a dict (content): unhashable
                assert hash(fast) == hash(checked)
            assert fast.model_dump() == checked.model_dump()
            assert fast.model_dump_json() == checked.model_dump_json()
            assert all(getattr(fast, f) == getattr(checked, f) for f in model.model_fields)
            assert pickle.loads(pickle.dumps(fast)) == checked
            update = {"id": uuid.uuid4()}
            assert fast.model_copy(update=update) == checked.model_copy(update=update)


async def test_pydantic_slots_canary() -> None:
    await slots_canary()


async def test_pydantic_dict_canary() -> None:
    await dict_canary()


# --- the canaries can fail ----------------------------------------------------------------


def _make_server_not_called(mp: pytest.MonkeyPatch) -> None:
    # As if AppRunner.setup() built its server through another method.
    mp.setattr(server.GuardedRunner, "_make_server", web.AppRunner._make_server)


def _kwargs_renamed(mp: pytest.MonkeyPatch) -> None:
    init = web.Server.__init__

    def renamed(self: web.Server, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._handler_kwargs = vars(self).pop("_kwargs")

    mp.setattr(web.Server, "__init__", renamed)


def _request_count_not_kept(mp: pytest.MonkeyPatch) -> None:
    received = web.RequestHandler.data_received

    def data_received(self: web.RequestHandler, data: bytes) -> None:
        received(self, data)
        self._request_count = 0  # as if counted somewhere else, or not at all

    mp.setattr(web.RequestHandler, "data_received", data_received)


def _parser_errors_renamed(mp: pytest.MonkeyPatch) -> None:
    # As if the parser raised other exception types for oversized headers.
    mp.setattr(server, "LineTooLong", type("HeaderLineTooLong", (Exception,), {}))
    mp.setattr(server, "BadHttpMessage", type("TooManyHeaders", (Exception,), {}))


def _new_slot(mp: pytest.MonkeyPatch) -> None:
    # As if BaseModel gained per-instance state that trusted() does not set.
    mp.setattr(BaseModel, "__slots__", (*BaseModel.__slots__, "__pydantic_new_state__"))


def _eq_counts_fields_set(mp: pytest.MonkeyPatch) -> None:
    # As if equality came to include which fields were given explicitly.
    eq = BaseModel.__eq__

    def stricter(self: BaseModel, other: object) -> bool:
        same = eq(self, other)
        if same is not True or not isinstance(other, BaseModel):
            return same
        return self.model_fields_set == other.model_fields_set

    mp.setattr(BaseModel, "__eq__", stricter)


@pytest.mark.parametrize(
    ("check", "breaking_release", "internal"),
    [
        pytest.param(make_server_canary, _make_server_not_called, MAKE_SERVER, id="make-server"),
        pytest.param(server_kwargs_canary, _kwargs_renamed, SERVER_KWARGS, id="server-kwargs"),
        pytest.param(
            request_count_canary, _request_count_not_kept, REQUEST_COUNT, id="request-count"
        ),
        pytest.param(handle_error_canary, _parser_errors_renamed, HANDLE_ERROR, id="handle-error"),
        pytest.param(slots_canary, _new_slot, SLOTS, id="pydantic-slots"),
        pytest.param(dict_canary, _eq_counts_fields_set, DICT, id="pydantic-dict"),
    ],
)
async def test_a_canary_fails_on_a_simulated_breaking_release(
    monkeypatch: pytest.MonkeyPatch,
    check: Callable[[], Awaitable[None]],
    breaking_release: Callable[[pytest.MonkeyPatch], None],
    internal: str,
) -> None:
    breaking_release(monkeypatch)
    with pytest.raises(AssertionError, match=re.escape(internal)) as failed:
        await check()
    said = str(failed.value)
    assert any(f"known-good range is {d}{good}." in said for d, good in KNOWN_GOOD.items())


# --- the bounds -----------------------------------------------------------------------------


def _pins() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps) if r.name in KNOWN_GOOD}


@pytest.mark.parametrize("dependency", sorted(KNOWN_GOOD))
def test_the_pin_is_the_known_good_range_and_holds_the_installed_release(dependency: str) -> None:
    pin = _pins()[dependency]
    assert pin.specifier == SpecifierSet(KNOWN_GOOD[dependency]), (
        f"pyproject.toml pins {pin}, the code says {dependency}{KNOWN_GOOD[dependency]}: "
        "change both together"
    )
    installed = version(dependency)
    assert pin.specifier.contains(installed, prereleases=True), (
        f"{dependency} {installed} is outside {pin}. Expected while trying a newer release "
        "to lift the bound: the canaries above say whether it works (README, 'Dependencies')"
    )


@pytest.mark.parametrize(
    ("breakage", "module", "names"),
    [
        pytest.param(
            "import pydantic; pydantic.BaseModel.__slots__ += ('__pydantic_new_state__',)",
            "strangler.core.models",
            ("pydantic", "BaseModel.__slots__", PYDANTIC_KNOWN_GOOD),
            id="pydantic-slots",
        ),
        pytest.param(
            "from aiohttp import web; web.RequestHandler.handle_error = "
            "lambda self, request, exc: None",
            "strangler.api.server",
            ("aiohttp", "RequestHandler.handle_error", AIOHTTP_KNOWN_GOOD),
            id="aiohttp-handle-error",
        ),
    ],
)
def test_an_incompatible_release_fails_at_import(
    breakage: str, module: str, names: tuple[str, ...]
) -> None:
    """The import-time checks: strangler refuses to start, naming the range known to work."""
    done = subprocess.run(
        [sys.executable, "-c", f"{breakage}\nimport {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), done.stderr[-2000:]
    for name in names:
        assert name in last, last
