"""The HTML report in a real browser: headless Chromium renders it and the numbers on the page
equal the CSV report's."""
from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest

from costwarden import demo as gen
from costwarden.budgets.loader import load_budgets
from costwarden.finance.export import to_csv
from costwarden.finance.html import build
from costwarden.finance.reports import finance_report

OCT = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))
NOW = datetime(2026, 10, 2, 6, tzinfo=timezone.utc)
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


class Tables(HTMLParser):
    """Rows of every <table id=...> as {data-col: text}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.svgs = 0
        self._table = self._col = None
        self._row: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = {}
        elif tag == "td" and self._row is not None:
            self._col = a.get("data-col")
            self._row[self._col] = ""
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "td":
            self._col = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._col is not None and self._row is not None:
            self._row[self._col] += data


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium); "
                                             "the HTML report cannot be checked in a real browser here")
def test_the_rendered_page_shows_the_csv_numbers(fin_data, tmp_path):
    store, _, _ = fin_data
    budgets = load_budgets(gen.demo_file("demo-budgets.yaml"))
    page = build(store, budgets, *OCT, NOW, "spend 2026-10")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # self-contained: nothing to fetch
    f = tmp_path / "report.html"
    f.write_text(page)
    profile = tmp_path / "profile"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                          "--dump-dom", f.as_uri()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = Tables()
    dom.feed(out.stdout)
    assert dom.svgs >= 3 and "<polyline" in out.stdout  # the charts are in the rendered DOM

    rows, cols = finance_report(store, ["team"], *OCT)
    expected = list(csv.DictReader(io.StringIO(to_csv(rows, cols))))
    shown = dom.tables["by-team"]
    assert [r["team"] for r in shown] == [r["team"] for r in expected]
    for s, e in zip(shown, expected):
        for c in ("requests", "cost_usd", "cost_per_request_usd", "cost_per_1k_requests_usd", "runs",
                  "cost_micros", "previous_cost_usd", "change_pct"):
            assert s[c] == e[c], (s["team"], c)
    assert shown[-1]["team"] == "TOTAL" and any(r["team"] == "unallocated" for r in shown)

    wf_rows, wf_cols = finance_report(store, ["team", "workflow"], *OCT, compare=False)
    wf_csv = {(r["team"], r["workflow"]): r["cost_usd"] for r in csv.DictReader(io.StringIO(to_csv(wf_rows, wf_cols)))}
    for r in dom.tables["workflows"]:
        assert r["cost_usd"] == wf_csv[(r["team"], r["workflow"])]
    shown_budgets = {r["budget"]: r for r in dom.tables["budgets"]}
    assert set(shown_budgets) == {"org-ai", "team-search", "team-research", "agent-loop-daily", "gpu-platform"}
    assert shown_budgets["org-ai"]["method"] == "weekday-seasonal"
    assert shown_budgets["org-ai"]["spend_usd"] == next(e["cost_usd"] for e in expected if e["team"] == "TOTAL")
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                    f"--screenshot={shot}", "--window-size=1000,1400", f.as_uri()],
                   capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 10_000  # it painted something
