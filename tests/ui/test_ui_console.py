"""The console in a real browser: signing in as each role, and the Budgets and Spend pages showing
the JSON API's own figures (read back from the rendered DOM, compared with GET /v1/budgets and
GET /v1/reports/spend), the hierarchy, the burn-down charts, the drill-down and the CSV."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ui_helpers import follow, sign_in, table


@pytest.mark.parametrize("role", ["viewer", "finance", "admin"])
def test_each_role_signs_in_with_its_token_kept_in_an_httponly_strict_cookie(console, driver, role):
    sign_in(driver, console.url, console.tokens[role])
    who = driver.find_element(By.ID, "principal")
    assert who.text == f"{role}-bot ({role})"
    assert [a.text for a in driver.find_elements(By.CSS_SELECTOR, "header nav a")] == [
        "Budgets", "Spend", "Controls", "Alerts", "Sources"]
    (cookie,) = driver.get_cookies()
    assert cookie["name"] == "cw_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert driver.execute_script("return document.cookie") == ""  # no script can read the token
    assert console.tokens[role] not in driver.page_source

    follow(driver, driver.find_element(By.CSS_SELECTOR, "form.who button"))  # sign out
    assert driver.current_url.endswith("/ui/login")
    assert driver.get_cookies() == []
    driver.get(f"{console.url}/ui/spend")  # signed out: back to the form, and then to the page asked for
    assert driver.current_url.startswith(f"{console.url}/ui/login")
    sign_in(driver, console.url, console.tokens[role], lands_on="/ui/spend")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Spend"


def test_gateway_and_unknown_tokens_are_refused_at_the_door(console, driver):
    sign_in(driver, console.url, console.tokens["gateway"], lands_on="/ui/login")
    assert "a gateway token cannot open the console" in driver.find_element(By.ID, "login-error").text
    sign_in(driver, console.url, "cw_not-a-token", lands_on="/ui/login")
    assert driver.find_element(By.ID, "login-error").text == "unknown or revoked token"
    assert driver.get_cookies() == []
    with httpx.Client(base_url=console.url, cookies={"cw_console": console.tokens["gateway"]}) as c:
        assert c.get("/ui/budgets").status_code == 403  # a gateway token in the cookie: the API's 403
    with httpx.Client(base_url=console.url, cookies={"cw_console": "cw_forged"}) as c:
        r = c.get("/ui/budgets")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/budgets"


def test_the_budgets_page_shows_the_apis_figures_nested_with_a_burn_down_each(console, driver):
    sign_in(driver, console.url, console.tokens["viewer"])
    shown = {r["data-budget"]: r for r in table(driver, "budgets")}
    with console.api("viewer") as api:
        expected = {b["budget"]: b for b in api.get("/v1/budgets").json()["budgets"]}
    assert list(shown) == ["acme", "team-search", "rag-answer", "team-research", "agent-loop", "nightly-batch",
                           "live-cap"]  # parents first, each child under its parent
    assert set(shown) == set(expected)
    for bid, e in expected.items():
        s = shown[bid]
        assert s["spend_usd@"] == e["spend_usd"] and s["amount_usd@"] == e["amount_usd"], bid
        assert s["pct_used@"] == e["pct_used"] and s["state"] == e["state"], bid
        assert s["pct_used"].startswith(f"{Decimal(e['pct_used']):,}%")
        # the forecast moves with the clock between the two reads: within a cent or 0.1 %
        gap = abs(Decimal(s["forecast_usd@"]) - Decimal(e["forecast_usd"]))
        assert gap <= max(Decimal("0.01"), Decimal(e["forecast_usd"]) / 1000), (bid, s["forecast_usd@"], e)
        assert s["period"].startswith(e["period"])
    depth = {b: int(r["data-depth"]) for b, r in shown.items()}
    assert depth == {"acme": 0, "team-search": 1, "rag-answer": 2, "team-research": 1, "agent-loop": 2,
                     "nightly-batch": 2, "live-cap": 0}
    assert shown["rag-answer"]["data-parent"] == "team-search" and shown["team-search"]["data-parent"] == "acme"
    assert shown["agent-loop"]["state"] == "over" and shown["nightly-batch"]["state"] == "over"
    assert shown["agent-loop"]["spend_usd"] == "$1.40" and shown["agent-loop"]["pct_used"].startswith("140.0%")

    charts = driver.execute_script("""return [...document.querySelectorAll('figure.burn')].map(f => ({
        id: f.id, label: f.querySelector('svg').getAttribute('aria-label'),
        actual: f.querySelectorAll('polyline.actual').length, budget: f.querySelectorAll('line.budget-line').length,
        forecast: f.querySelectorAll('line.forecast').length, thresholds: f.querySelectorAll('line.threshold').length,
        ticks: f.querySelectorAll('.tick').length, width: f.getBoundingClientRect().width}))""")
    assert [c["id"] for c in charts] == [f"chart-{b}" for b in shown]
    thresholds = {"acme": 2, "team-search": 1, "rag-answer": 1, "team-research": 0, "agent-loop": 2,
                  "nightly-batch": 1, "live-cap": 1}
    for c in charts:
        bid = c["id"][len("chart-"):]
        assert c["label"] == f"burn-down of {bid}" and c["actual"] == 1 and c["budget"] == 1, c
        assert c["forecast"] == 1 and c["thresholds"] == thresholds[bid] and c["ticks"] >= 4, c
        assert c["width"] > 300
    # the actual line of agent-loop ends at its spend: $1.40 on a $1.00 budget is above the budget line
    end_y, budget_y = driver.execute_script("""const f = document.getElementById('chart-agent-loop');
        const pts = f.querySelector('polyline.actual').getAttribute('points').trim().split(' ');
        return [parseFloat(pts[pts.length - 1].split(',')[1]), parseFloat(f.querySelector('line.budget-line')
        .getAttribute('y1'))]""")
    assert end_y < budget_y  # SVG y grows downwards


def _api_report(console, by: str, period: str) -> list[dict]:
    with console.api("finance") as api:
        r = api.get("/v1/reports/spend", params={"by": by, "period": period})
        assert r.status_code == 200, r.text
        return r.json()["rows"]


MONEY_COLS = ("cost_usd", "cost_per_request_usd", "cost_per_1k_requests_usd", "cost_per_run_usd", "previous_cost_usd")


def _same(shown: dict, api_row: dict) -> None:
    for c in MONEY_COLS + ("change_pct",):
        if c + "@" in shown:
            assert shown[c + "@"] == (api_row[c] if api_row[c] is not None else ""), (c, shown, api_row)
    assert shown["requests@"] == str(api_row["requests"])


def test_spend_shows_the_finance_report_drills_down_and_downloads_what_is_on_screen(console, driver):
    period = f"{datetime.now(timezone.utc):%Y-%m}"
    sign_in(driver, console.url, console.tokens["finance"])
    follow(driver, driver.find_element(By.LINK_TEXT, "Spend"))

    # by team: every row, the unallocated one and TOTAL, with the API's exact figures
    api = {r["team"]: r for r in _api_report(console, "team", period)}
    rows = table(driver, "spend")
    assert [r["team"] for r in rows[:-1]] == [t for t in api if t != "TOTAL"]
    for r in rows[:-1]:
        _same(r, api[r["team"]])
    assert rows[-1]["team"] == "TOTAL"
    _same(rows[-1], api["TOTAL"])
    assert "unallocated" in api and any("unallocated" in r["_class"] for r in rows)
    unalloc = driver.find_element(By.ID, "kpi-unallocated")
    assert unalloc.get_attribute("data-value") == api["unallocated"]["cost_usd"]
    assert driver.find_element(By.ID, "kpi-total").get_attribute("data-value") == api["TOTAL"]["cost_usd"]
    assert any(r.get("cost_per_run_usd@") for r in rows)  # runs tagged run_id: unit cost per run shown
    assert api["search"]["previous_cost_usd"] == "0.600000000" and api["search"]["change_pct"] is not None

    # team -> workflow: the same report by team,workflow for the team, its total the team's own row
    follow(driver, driver.find_element(By.LINK_TEXT, "search"))
    assert "team=search" in driver.current_url
    by_wf = [r for r in _api_report(console, "team,workflow", period) if r["team"] == "search"]
    rows = table(driver, "spend")
    assert [r["workflow"] for r in rows[:-1]] == [r["workflow"] for r in by_wf] == ["rag-answer", "query-rewrite"]
    for r, a in zip(rows, by_wf):
        _same(r, a)
    assert rows[-1]["workflow"] == "total of search"
    _same(rows[-1], api["search"])
    assert driver.find_element(By.ID, "kpi-unallocated").get_attribute("data-value") == api["unallocated"]["cost_usd"]

    # workflow -> model
    follow(driver, driver.find_element(By.LINK_TEXT, "rag-answer"))
    assert "workflow=rag-answer" in driver.current_url
    by_model = [r for r in _api_report(console, "team,workflow,model", period)
                if (r["team"], r["workflow"]) == ("search", "rag-answer")]
    rows = table(driver, "spend")
    assert [r["model"] for r in rows[:-1]] == [r["model"] for r in by_model] == ["gpt-4o", "gpt-4o-mini"]
    for r, a in zip(rows, by_model):
        _same(r, a)
    crumbs = " ".join(driver.find_element(By.CSS_SELECTOR, "nav.crumbs").text.split())
    assert crumbs == "all teams › search › rag-answer Download CSV"

    # the CSV of what is on screen: the same rows, exact, and the workflow's total
    href = driver.find_element(By.ID, "csv").get_attribute("href")
    text = driver.execute_script("return await (await fetch(arguments[0])).text()", href)
    got = list(csv.DictReader(io.StringIO(text)))
    assert [(r["model"], r["cost_usd"]) for r in got] == [(r["model"], r["cost_usd"]) for r in by_model] + [
        ("TOTAL", next(r for r in _api_report(console, "team,workflow", period)
                       if (r["team"], r["workflow"]) == ("search", "rag-answer"))["cost_usd"])]

    # another period and another dimension, from the form
    follow(driver, driver.find_element(By.LINK_TEXT, "all teams"))
    last = (datetime.now(timezone.utc).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    box = driver.find_element(By.NAME, "period")
    box.clear()
    box.send_keys(last)
    Select(driver.find_element(By.NAME, "by")).select_by_value("model")
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert f"period={last}" in driver.current_url
    api_model = {r["model"]: r for r in _api_report(console, "model", last)}
    rows = table(driver, "spend")
    assert [r["model"] for r in rows[:-1]] == ["gpt-4o"] and rows[-1]["model"] == "TOTAL"
    _same(rows[0], api_model["gpt-4o"])
    assert rows[0]["cost_usd"] == "$0.60"

    box = driver.find_element(By.NAME, "period")
    box.clear()
    box.send_keys("last year")
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert "use 2026-11, 2026-Q4" in driver.find_element(By.ID, "spend-error").text
