"""Alerts, Sources and the layout in a real browser: deliveries by channel name (never a channel's
address), connector cursors and the reconciliation of GET /v1/reconcile, and every page at 1280 px
and 390 px without horizontal overflow (screenshots saved, their directory printed)."""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from ui_helpers import SECRET_PATH, browser, fits, shots_dirs, sign_in, table, wait_for

PAGES = ("budgets", "spend", "controls", "alerts", "sources")


def test_alerts_show_each_signal_and_its_deliveries_never_a_channel_address(console, driver):
    sign_in(driver, console.url, console.tokens["admin"])
    driver.get(f"{console.url}/ui/alerts")
    signals = table(driver, "signals")
    crossed = next(s for s in signals
                   if s["data-key"].startswith("agent-loop:") and s["data-key"].endswith("actual:100"))
    assert crossed["spend"].startswith("$1.") and crossed["amount"] == "$1.00"
    assert "workflow=agent-loop" in crossed["detail"]
    chans = {d.get_attribute("data-channel"): d for d in driver.find_elements(
        By.CSS_SELECTOR, f"tr[data-key='{crossed['data-key']}'] .delivery")}
    assert set(chans) == {"finance-hook", "search-down"}
    assert chans["finance-hook"].get_attribute("data-status") == "sent" and "1 attempt" in chans["finance-hook"].text
    assert chans["search-down"].get_attribute("data-status") in ("pending", "failed")  # nothing listens there
    assert "delivery failed" in chans["search-down"].text
    org = next(s for s in signals if s["data-key"].startswith("acme:"))
    assert org["data-budget"] == "acme" and org["amount"] == "$40.00"
    assert any(s["data-budget"] == "nightly-batch" and "no notification" in s["deliveries"] for s in signals)

    # no page, in any role, shows a channel's address or any part of its secret path
    for role in ("viewer", "finance", "admin"):
        sign_in(driver, console.url, console.tokens[role])
        for page in PAGES:
            driver.get(f"{console.url}/ui/{page}")
            html = driver.page_source
            assert SECRET_PATH not in html and "json://" not in html and "127.0.0.1:9" not in html, (role, page)
            for url in console.channels.values():
                assert url not in html


def test_sources_show_cursors_and_the_reconciliation_to_finance(console, driver):
    from costwarden.store import connectors as cursors

    rt = console.runtime
    now = datetime.now(timezone.utc)
    at = now.replace(minute=0, second=0, microsecond=0)
    window = f"window {(at - timedelta(hours=1)).isoformat()}..{at.isoformat()}"  # as the poller writes it
    rt.thread.call(lambda: cursors.save_cursor(rt.store, "openai-usage", at, window))
    rt.thread.call(lambda: cursors.write_cost_lines(rt.store, [{
        "source": "openai-costs", "day": now.date(), "provider": "openai", "project_id": "", "workspace_id": "",
        "api_key_id": "", "line_item": "", "model": "", "service_tier": "", "amount": Decimal("3.00"),
        "currency": "USD", "quantity": None, "polled_at": now}]))

    sign_in(driver, console.url, console.tokens["viewer"])
    driver.get(f"{console.url}/ui/sources")
    (cur,) = table(driver, "cursors")
    assert cur["data-connector"] == "openai-usage" and cur["cursor"] == f"{at:%Y-%m-%d %H:%M} UTC"
    assert driver.find_elements(By.ID, "drift") == []  # the reconciliation is finance's (as GET /v1/reconcile)
    assert "a finance or admin token may see it" in driver.find_element(By.ID, "reconcile-needs-finance").text

    sign_in(driver, console.url, console.tokens["finance"])
    driver.get(f"{console.url}/ui/sources")
    with console.api("finance") as api:
        expected = api.get("/v1/reconcile", params={"period": f"{now:%Y-%m}"}).json()["rows"]
    rows = driver.execute_script("""return [...document.querySelectorAll('#drift tbody tr')].map(tr =>
        [...tr.querySelectorAll('td')].map(td => td.dataset.value || td.textContent.trim()))""")
    assert [r[:7] for r in rows] == [[e["day"], e["provider"], e["scope"], e["basis"], e["ours_usd"],
                                      e["reported_usd"], e["drift_usd"]] for e in expected]
    assert expected and expected[0]["reported_usd"] == "3.000000000"


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_fits_its_width_and_is_photographed(console, width, request):
    from ui_helpers import NO_BROWSER

    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    out = Path(tempfile.mkdtemp(prefix=f"cw-ui-{width}-"))
    dirs = shots_dirs(out)
    print(f"\nscreenshots at {width} px: {out}")
    height = 900 if width > 600 else 844
    d = browser(width, height)
    try:
        sign_in(d, console.url, console.tokens["admin"])
        for page in PAGES:
            d.get(f"{console.url}/ui/{page}")
            if page == "controls":
                wait_for(lambda: d.find_element(By.ID, "live").get_attribute("data-state") == "live", 10, "stream")
            scroll, inner = fits(d)
            wide = d.execute_script("""return [...document.querySelectorAll('body *')].filter(e =>
                e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll'))
                .map(e => e.tagName + '.' + e.className).slice(0, 5)""")
            assert inner == width and scroll <= inner, (page, scroll, inner, wide)
            shot = out / f"{page}-{width}.png"
            d.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000  # it painted the page
            for extra in dirs[1:]:
                shutil.copy(shot, extra / shot.name)
    finally:
        d.quit()
