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
    """Rows of every <table id=...> as {data-col: text}, and each money cell's exact `data-value`."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.values: dict[str, list[dict]] = {}
        self.svgs = 0
        self._table = self._col = None
        self._row: dict | None = None
        self._vals: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
            self.values[self._table] = []
        elif tag == "tr" and self._table:
            self._row, self._vals = {}, {}
        elif tag == "td" and self._row is not None:
            self._col = a.get("data-col")
            self._row[self._col] = ""
            if "data-value" in a:
                self._vals[self._col] = a["data-value"]
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.tables[self._table].append(self._row)
            self.values[self._table].append(self._vals)
            self._row = None
        elif tag == "td":
            self._col = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._col is not None and self._row is not None:
            self._row[self._col] += data


MONEY = re.compile(r"^-?(\$\d{1,3}(,\d{3})*\.\d{2,}|<\$0\.01)$")
PROBE = """<script>
const r = {scroll: document.documentElement.scrollWidth, width: window.innerWidth};
r.money = [...document.querySelectorAll('td[data-col$="_usd"]')].map(td => td.textContent);
r.svgs = [...document.querySelectorAll('svg')].map(s => ({label: s.getAttribute('aria-label'),
  axis: s.querySelectorAll('.axis-label').length, ticks: s.querySelectorAll('.tick').length}));
r.wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > r.width + 1)
  .map(e => e.tagName + '#' + (e.id || '') + '.' + e.className).slice(0, 5);
document.body.insertAdjacentHTML('beforeend', '<pre id="probe">' + JSON.stringify(r) + '</pre>');
</script>"""


def chromium(*args: str, profile) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium); "
                                             "the HTML report cannot be checked in a real browser here")
def test_the_rendered_page_shows_the_csv_numbers(fin_data, tmp_path):
    store, _, _ = fin_data
    budgets = load_budgets(gen.demo_file("demo-budgets.yaml"))
    page = build(store, budgets, *OCT, NOW, "spend 2026-10")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # self-contained: nothing to fetch
    assert "<script" not in page and ".py" not in page  # no script, and it cites no source file
    f = tmp_path / "report.html"
    f.write_text(page)
    profile = tmp_path / "profile"
    out = chromium("--dump-dom", f.as_uri(), profile=profile)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = Tables()
    dom.feed(out.stdout)
    assert dom.svgs >= 3 and "<polyline" in out.stdout  # the charts are in the rendered DOM

    rows, cols = finance_report(store, ["team"], *OCT)
    expected = list(csv.DictReader(io.StringIO(to_csv(rows, cols))))
    shown, exact = dom.tables["by-team"], dom.values["by-team"]
    assert [r["team"] for r in shown] == [r["team"] for r in expected]
    for s, x, e in zip(shown, exact, expected):
        for c in ("cost_usd", "cost_per_request_usd", "cost_per_1k_requests_usd", "cost_per_run_usd"):
            assert x.get(c, "") == e[c], (s["team"], c)  # the exact decimal behind the formatted cell
            assert not e[c] or MONEY.match(s[c]), (s["team"], c, s[c])
        assert s["requests"] == f"{int(e['requests']):,}"
        assert "cost_nanos" not in s  # said once, as money
        # the dataset starts on 2026-09-30: one day before October, so there is an earlier period
        assert x["previous_cost_usd"] == e["previous_cost_usd"]
    assert shown[-1]["team"] == "TOTAL" and any(r["team"] == "unallocated" for r in shown)

    wf_rows, wf_cols = finance_report(store, ["team", "workflow"], *OCT, compare=False)
    wf_csv = {(r["team"], r["workflow"]): r["cost_usd"] for r in csv.DictReader(io.StringIO(to_csv(wf_rows, wf_cols)))}
    for r, x in zip(dom.tables["workflows"], dom.values["workflows"]):
        assert x["cost_usd"] == wf_csv[(r["team"], r["workflow"])] and MONEY.match(r["cost_usd"])
    shown_budgets = {r["budget"]: (r, x) for r, x in zip(dom.tables["budgets"], dom.values["budgets"])}
    assert set(shown_budgets) == {"org-ai", "team-search", "team-research", "agent-loop-daily", "gpu-platform"}
    org, org_exact = shown_budgets["org-ai"]
    assert org["method"] == "weekday-seasonal" and org["state"] in ("ok", "at-risk", "over")
    assert org["pct_used"].endswith("%")
    assert org_exact["spend_usd"] == next(e["cost_usd"] for e in expected if e["team"] == "TOTAL")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium); "
                                             "the HTML report cannot be checked in a real browser here")
def test_the_page_fits_1280px_with_formatted_money_and_charts_with_axes(fin_data, tmp_path):
    """Read back from the DOM Chromium laid out at 1280 px (a copy of the page with a probe script:
    the report itself has none): no horizontal overflow, every money cell formatted, every chart
    with axis labels and ticks; and a screenshot that painted the page."""
    import json

    store, _, _ = fin_data
    budgets = load_budgets(gen.demo_file("demo-budgets.yaml"))
    page = build(store, budgets, *OCT, NOW, "spend 2026-10")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    out = chromium("--window-size=1280,900", "--dump-dom", probe.as_uri(), profile=profile)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(re.findall(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)[-1].replace("&amp;", "&")
                   .replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"'))
    assert r["width"] == 1280 and r["scroll"] <= 1280, r["wide"]
    bad = [t for t in r["money"] if t and t != "no earlier data" and not MONEY.match(t)]
    assert r["money"] and not bad, bad
    assert len(r["svgs"]) >= 5
    for svg in r["svgs"]:
        assert svg["axis"] >= 1 and svg["ticks"] >= 2, svg
    shot = tmp_path / "page.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2400", (tmp_path / "probe.html").as_uri(), profile=profile)
    assert shot.exists() and shot.stat().st_size > 30_000  # it painted something


def test_no_earlier_data_instead_of_zeros(fin_data):
    """The dataset starts on 2026-09-30: a report of that month has no earlier period to compare."""
    store, _, _ = fin_data
    page = build(store, None, datetime(2026, 9, 1, tzinfo=timezone.utc), datetime(2026, 10, 1, tzinfo=timezone.utc),
                 NOW, "spend 2026-09")
    dom = Tables()
    dom.feed(page)
    assert {r["previous_cost_usd"] for r in dom.tables["by-team"]} == {"no earlier data"}
    shown = re.sub(r'data-value="[^"]*"', "", page)  # the exact values stay for machines; people see text
    assert "0.000000" not in shown and 'id="no-budgets"' in page
