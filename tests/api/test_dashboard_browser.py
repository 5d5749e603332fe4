"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Signs in, reads the stage, advances it through the confirmation dialog and sees the API
follow; then, in ``shadow``, changes a row behind the facade's back and sees the divergence
appear with its field diff. Saves screenshots under ``test-artifacts/``.

Without Chromium the tests skip, unless ``STRANGLER_REQUIRE_BROWSER=1`` (CI sets it, and
installs Chromium), where a missing browser fails.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from strangler.api.keys import FACADE
from tests.api.conftest import ADMIN, ApiFactory, as_user

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}

if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
    if os.environ.get("STRANGLER_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.async_api import Page, async_playwright, expect  # noqa: E402


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = await browser.new_context(viewport={"width": 1400, "height": 1100})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page
        finally:
            await browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


async def _sign_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/admin")
    await page.fill("#token", "not the token")
    await page.click("[data-testid=sign-in]")
    await expect(page.get_by_test_id("login-error")).to_have_text("Wrong admin token.")
    await page.fill("#token", ADMIN)
    await page.click("[data-testid=sign-in]")
    await expect(page.locator(".ladder li.current")).to_have_count(1)


async def _advance(page: Page, to: str) -> None:
    await expect(page.get_by_test_id("advance")).to_have_text(f"Advance to {to}")
    await page.get_by_test_id("advance").click()
    dialog = page.get_by_test_id("confirm")
    await expect(dialog).to_be_visible()
    await page.fill("#confirm-reason", f"browser test: {to}")
    await page.get_by_test_id("confirm-ok").click()
    await expect(page.get_by_test_id("stage")).to_have_text(to)


async def test_sign_in_advance_the_stage_and_see_the_api_follow(
    make_api: ApiFactory, page: Page
) -> None:
    client = await make_api(None)  # the control table decides: it starts at off
    base = str(client.make_url("")).rstrip("/")
    await _sign_in(page, base)
    await expect(page.get_by_test_id("stage")).to_have_text("off")
    await expect(page.locator(".ladder li.current")).to_have_attribute("data-stage", "off")
    await expect(page.get_by_test_id("guard")).to_contain_text("it watches at live and rampdown")

    # The confirmation states what changes and warns that no verify has run.
    await page.get_by_test_id("advance").click()
    await expect(page.locator("#confirm-changes")).to_contain_text("Writes go to MongoDB then")
    await expect(page.get_by_test_id("confirm-warnings")).to_contain_text("No verify has run")
    await page.get_by_test_id("confirm-cancel").click()
    await expect(page.get_by_test_id("stage")).to_have_text("off")

    await _advance(page, "dualwrite")
    state = await (await client.get("/admin/stage", headers=ADMIN_H)).json()
    assert state["stage"] == "dualwrite" and state["reason"] == "browser test: dualwrite"
    # ... and the API follows: a new session is written to both stores.
    created = await (
        await client.post("/sessions", json={"title": "after"}, headers=as_user("alice"))
    ).json()
    facade = client.server.app[FACADE]
    await facade.store("new").get_session(uuid.UUID(created["id"]))
    await expect(page.locator("#transitions")).to_contain_text("dualwrite")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-advanced.png"), full_page=True)

    # Reads cannot move to Supabase without evidence: the dialog lists each piece, red
    # or green, and a confirm without force is refused with the same list.
    await page.get_by_test_id("advance").click()
    evidence = page.get_by_test_id("confirm-evidence")
    await expect(evidence.locator("[data-evidence=backfill]")).to_have_attribute("data-ok", "false")
    await expect(evidence).to_contain_text("strangler backfill")
    await expect(evidence.locator("[data-evidence=repairs]")).to_have_attribute("data-ok", "true")
    await page.screenshot(path=str(ARTIFACTS / "dashboard-evidence.png"), full_page=True)
    await page.get_by_test_id("confirm-ok").click()
    await expect(page.locator("#stage-message")).to_contain_text("refusing to move to shadow")
    await expect(page.get_by_test_id("stage")).to_have_text("dualwrite")

    # Rolling back goes through the same confirmation.
    await expect(page.get_by_test_id("rollback")).to_have_text("Roll back to off")
    await page.get_by_test_id("rollback").click()
    await expect(page.locator("#confirm-title")).to_contain_text("Roll back: dualwrite → off")
    await page.get_by_test_id("confirm-ok").click()
    await expect(page.get_by_test_id("stage")).to_have_text("off")


async def test_a_divergence_made_behind_the_facades_back_appears(
    make_api: ApiFactory, page: Page, clean_pg: str
) -> None:
    client = await make_api(None)
    for stage in ("dualwrite", "shadow"):  # no backfill or verify here: forced, with a reason
        move = {"stage": stage, "force": True, "reason": "test"}
        resp = await client.put("/admin/stage", json=move, headers=ADMIN_H)
        assert resp.status == 200
    base = str(client.make_url("")).rstrip("/")
    await _sign_in(page, base)
    await expect(page.get_by_test_id("stage")).to_have_text("shadow")
    await expect(page.get_by_test_id("divergences")).to_contain_text("none recorded")

    created: dict[str, Any] = await (
        await client.post("/sessions", json={"title": "honest"}, headers=as_user("alice"))
    ).json()
    conn = await asyncpg.connect(clean_pg)
    try:
        await conn.execute(
            "UPDATE chat_sessions SET title = 'tampered' WHERE id = $1::text::uuid", created["id"]
        )
    finally:
        await conn.close()
    # A read in shadow compares Supabase with MongoDB and records the difference.
    resp = await client.get(f"/sessions/{created['id']}", headers=as_user("alice"))
    assert (await resp.json())["title"] == "honest"  # MongoDB still serves reads

    row = page.locator(f"#divergences tr[data-record='{created['id']}']")
    await expect(row).to_contain_text("title", timeout=15_000)
    await expect(row).to_contain_text('"honest"')
    await expect(row).to_contain_text('"tampered"')
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-divergence.png"), full_page=True)


async def test_a_partitioned_backfill_shows_each_slice_and_the_total(
    make_api: ApiFactory, page: Page, clean_pg: str
) -> None:
    """Two partitions recorded by two hosts: one done, one running. The Backfill panel
    lists both with their rows and status, and the total."""
    client = await make_api(None)
    conn = await asyncpg.connect(clean_pg)
    try:
        done = {"counts": {"chat_sessions": {"read": 10}, "messages": {"read": 1200}}}
        running = {"collections": {"chat_sessions": {"read": 12}, "messages": {"read": 300}}}
        for k, status, progress, result in (
            (1, "done", {}, done),
            (2, "running", running, None),
        ):
            await conn.execute(
                "INSERT INTO strangler.job_runs (kind, origin, status, params, progress, result)"
                " VALUES ('backfill', $1, $2, $3::text::jsonb, $4::text::jsonb,"
                " $5::text::jsonb)",
                f"host-{k}:1",
                status,
                json.dumps({"source": "x", "partition": {"k": k, "n": 2}}),
                json.dumps(progress),
                None if result is None else json.dumps(result),
            )
    finally:
        await conn.close()
    base = str(client.make_url("")).rstrip("/")
    await _sign_in(page, base)
    table = page.get_by_test_id("backfill-partitions")
    await expect(table.locator("tr")).to_have_count(4)  # head, two slices, total
    await expect(table).to_contain_text("host-1:1")
    await expect(table).to_contain_text("1,210")
    await expect(table).to_contain_text("312")
    await expect(page.get_by_test_id("backfill-partitions-total")).to_contain_text("1 of 2 done")
    await expect(page.get_by_test_id("backfill-partitions-total")).to_contain_text("1,522")
