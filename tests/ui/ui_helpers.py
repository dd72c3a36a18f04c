"""Helpers of the console tests (imported by name: tests have no __init__.py): a real API server
(uvicorn on loopback over an embedded pipeline) with nested budgets, usage of three teams, blocks,
alerts delivered to a local webhook and one refused; a headless Chromium driven by Selenium."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import httpx

from costwarden.testing.receiver import HookReceiver

BUDGETS = """\
version: 1
budgets:
  - id: acme
    name: ACME, all AI spend
    scope: {org: acme}
    period: month
    amount: "40.00"
    thresholds:
      - {at: 5, actions: [{notify: [finance-hook]}]}
      - {at: 100, basis: forecast, actions: [{notify: [finance-hook]}]}
  - id: team-search
    parent: acme
    scope: {org: acme, team: search}
    period: month
    amount: "10.00"
    thresholds:
      - {at: 50, actions: [{notify: [search-down]}]}
  - id: rag-answer
    name: Search answers
    parent: team-search
    scope: {org: acme, team: search, workflow: rag-answer}
    period: day
    amount: "5.00"
    thresholds:
      - {at: 90, actions: [{throttle: {rate_per_min: "30"}}]}
  - id: team-research
    parent: acme
    scope: {org: acme, team: research}
    period: week
    amount: "20.00"
  - id: agent-loop
    parent: team-research
    scope: {org: acme, team: research, workflow: agent-loop}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 50, actions: [{throttle: {rate_per_min: "60"}}]}
      - {at: 100, actions: [{notify: [finance-hook, search-down]}, {block: true}]}
  - id: nightly-batch
    parent: team-research
    scope: {org: acme, workflow: nightly-batch}
    period: day
    amount: "0.50"
    thresholds:
      - {at: 100, actions: [{block: true}]}
  - id: live-cap
    scope: {workflow: live-agent}
    period: day
    amount: "0.000001"
    thresholds:
      - {at: 100, actions: [{block: true}]}
"""
# (team, workflow, model, input tokens, output tokens, calls): about $9 in all, this month
USAGE = [("search", "rag-answer", "gpt-4o-mini", 20_000, 1_500, 30),
         ("search", "rag-answer", "gpt-4o", 40_000, 2_000, 12),
         ("search", "query-rewrite", "gpt-4o-mini", 3_000, 200, 25),
         ("research", "agent-loop", "gpt-4o", 100_000, 10_000, 4),
         ("research", "nightly-batch", "gpt-4o", 200_000, 10_000, 2),
         ("research", "summarise", "gpt-4o-mini", 50_000, 3_000, 6),
         (None, "adhoc", "gpt-4o-mini", 10_000, 500, 5)]
SECRET_PATH = "hook-" + uuid.uuid4().hex  # in a channel's URL: must never reach a page


@dataclass
class Console:
    url: str
    runtime: object
    tokens: dict[str, str]
    hook: HookReceiver
    channels: dict[str, str] = field(default_factory=dict)

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=15)


def event(team: str | None, workflow: str, model: str, tin: int, tout: int, when: datetime | None = None,
          **tags) -> dict:
    t = {"org": "acme", "workflow": workflow, **({"team": team} if team else {}), **tags}
    return {"event_id": f"ui-{uuid.uuid4().hex}", "occurred_at": (when or datetime.now(timezone.utc)).isoformat(),
            "source": "gateway", "provider": "openai", "model": model, "tokens": {"input": tin, "output": tout},
            "attribution": {"tags": t}}


def usage_events(now: datetime) -> list[dict]:
    out = []
    for team, wf, model, tin, tout, n in USAGE:
        for i in range(n):  # in event-time order, the last one a minute ago
            out.append(event(team, wf, model, tin, tout, now - timedelta(minutes=n - i), run_id=f"{wf}-{i // 3}"))
    last_month = now.replace(day=1) - timedelta(days=3)  # the previous period of the spend page
    out += [event("search", "rag-answer", "gpt-4o", 40_000, 2_000, last_month) for _ in range(5)]
    return out


def wait_for(pred, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def serve_console(settings, root: Path) -> Iterator[Console]:
    from costwarden.api import ApiServer, EmbeddedRuntime, create_app, create_token

    hook = HookReceiver()
    budgets = root / "budgets.yaml"
    budgets.write_text(BUDGETS)
    settings.budgets.budgets_file = budgets
    settings.api.stream_heartbeat_s = 1.0
    settings.alerts.delivery_interval_s = 0.2
    settings.alerts.max_attempts = 2
    channels = {"finance-hook": hook.url(SECRET_PATH),
                "search-down": f"json://127.0.0.1:9/{SECRET_PATH}-refused"}  # nothing listens on port 9
    settings.alerts.channels = channels
    rt = EmbeddedRuntime.open(settings, deliver=True)
    tokens = {role: rt.thread.call(lambda role=role: create_token(rt.store, f"{role}-bot", role))
              for role in ("gateway", "viewer", "finance", "admin")}
    srv = ApiServer(create_app(rt)).start()
    console = Console(srv.url, rt, tokens, hook, channels)
    try:
        with console.api("gateway") as gw:
            r = gw.post("/v1/events", json=usage_events(datetime.now(timezone.utc)))
            assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
            wait_for(lambda: gw.get("/v1/decisions/nightly-batch").json()["action"] == "block", what="a block")
        wait_for(lambda: len(hook.snapshot()) >= 2, 20, "alerts delivered to the local webhook")
        yield console
    finally:
        srv.stop()
        rt.close()
        hook.close()


# --- the browser ------------------------------------------------------------------------------

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = (None if CHROMIUM and CHROMEDRIVER else
              "Chromium and its driver are not installed (apt-get install -y chromium chromium-driver); "
              "the console cannot be clicked through in a real browser here")


def browser(width: int = 1280, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
              f"--window-size={width},{height}", "--force-device-scale-factor=1", "--lang=en-US"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    if width < 500:  # narrower than a desktop window may be: a phone's viewport, as the phone lays it out
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    return driver


def sign_in(driver, url: str, token: str, lands_on: str = "/ui/budgets") -> None:
    """Through the sign-in form (the one on screen, else a fresh one); waits for the next page and
    checks it is `lands_on`."""
    from selenium.webdriver.common.by import By

    if not driver.current_url.startswith(f"{url}/ui/login"):  # on the form already: keep where it leads
        driver.get(f"{url}/ui/login")
    driver.find_element(By.ID, "token").clear()
    driver.find_element(By.ID, "token").send_keys(token)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    if lands_on is not None:
        assert driver.current_url == url + lands_on, driver.current_url


def follow(driver, element) -> None:
    """Click a link or a submit button and wait until the page it leads to has loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.cwBefore = true")  # gone once the next page is loaded
    element.click()
    WebDriverWait(driver, 10).until(_next_page)


def _next_page(driver) -> bool:
    from selenium.common.exceptions import WebDriverException

    try:
        return driver.execute_script("return window.cwBefore !== true && document.readyState === 'complete'")
    except WebDriverException:  # between two documents
        return False


TABLE_JS = """
const t = document.getElementById(arguments[0]);
if (!t) return null;
return [...t.querySelectorAll('tbody tr, tfoot tr')].map(tr => {
  const r = {_class: tr.className};
  for (const td of tr.querySelectorAll('td[data-col]')) {
    r[td.dataset.col] = td.textContent.trim().replace(/\\s+/g, ' ');
    if (td.hasAttribute('data-value')) r[td.dataset.col + '@'] = td.dataset.value;
  }
  for (const [k, v] of Object.entries(tr.dataset)) r['data-' + k] = v;
  return r;
});"""


def table(driver, table_id: str) -> list[dict] | None:
    """Rows of a table on the page: {data-col: text, data-col + '@': the exact data-value, data-*: attrs}."""
    return driver.execute_script(TABLE_JS, table_id)


def fits(driver) -> tuple[int, int]:
    """(document scroll width, window inner width)."""
    return tuple(driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]"))


def shots_dirs(tmp: Path) -> list[Path]:
    """Where screenshots go: a temporary directory (printed by the test), and docs/ui when
    COSTWARDEN_UI_SCREENSHOTS names it (run once to refresh the committed ones)."""
    out = [tmp]
    extra = os.environ.get("COSTWARDEN_UI_SCREENSHOTS")
    if extra:
        out.append(Path(extra))
    for d in out:
        d.mkdir(parents=True, exist_ok=True)
    return out
