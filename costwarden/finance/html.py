"""A self-contained HTML report for a finance reader: inline SVG charts and CSS, no script, no
network, no CDN.

Sections: the headline (total, change on the previous period, requests, unit cost, budgets over),
spend by team (the rows of `report-finance --by team`, formatted for reading), spend per day (all
teams stacked, then each team on its own scale), budgets (state, % used, forecast, burn-down with
the budget line and the forecast), top workflows. Every cell carries `data-col`, and every money
cell `data-value` with the exact decimal of the CSV report, so a browser test can read the page back.
Money is shown as `$1,234.56` (costwarden/human.py); the page fits 1280 px.
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from html import escape

from costwarden import human
from costwarden.money import from_nanos
from costwarden.reports import MODALITY_COLS

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04", "#db2777",
           "#65a30d")
STATE_COLOR = {"over": "#b91c1c", "at-risk": "#b45309", "ok": "#15803d"}
CSS = """*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#111827;
background:#fff}main{max-width:1200px;margin:0 auto;padding:24px 28px 40px}h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:32px 0 8px;padding-top:8px;border-top:1px solid #e5e7eb}h3{font-size:14px;margin:0 0 4px}
.sub,.note{color:#4b5563}.note{font-size:13px;margin:6px 0}
.kpis{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:18px 0 8px}
.kpi{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px}.kpi .v{font-size:22px;font-weight:600;
font-variant-numeric:tabular-nums}.kpi .l{color:#4b5563;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.kpi .d{font-size:12px;color:#4b5563}
table{border-collapse:collapse;margin:8px 0;width:100%}td,th{border-bottom:1px solid #e5e7eb;padding:5px 10px;
text-align:left;white-space:nowrap}th{font-size:12px;color:#374151;background:#f9fafb;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:600;border-top:2px solid #9ca3af}
.state{font-weight:600}.grid{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px}
.grid2{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
figure{margin:0;border:1px solid #e5e7eb;border-radius:8px;padding:8px 8px 4px}svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#374151}svg .title{font-size:12px;font-weight:600;fill:#111827}
svg .axis-label{fill:#6b7280}.legend{margin:6px 0;font-size:13px}.legend span{display:inline-block;margin-right:16px}
.sw{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px}
footer{margin-top:36px;color:#6b7280;font-size:12px}"""

# --- tables --------------------------------------------------------------------------------------------

TEAM_COLUMNS = ["requests", "tokens", "cost_usd", "cost_per_request_usd", "cost_per_1k_requests_usd", "runs",
                "cost_per_run_usd", "previous_cost_usd", "change_pct", "unpriced_events"]
NO_EARLIER = "no earlier data"


def _money_col(col: str) -> bool:
    return col.endswith("_usd")


def _numeric(col: str) -> bool:
    return _money_col(col) or col in ("requests", "tokens", "runs", "unpriced_events", "pct_used", "change_pct")


def _cell(col: str, v, text: str | None = None) -> str:
    """One cell: formatted text; money also carries its exact value in `data-value`."""
    if text is None:
        text = "" if v is None else (human.compact(v) if col == "tokens" else human.cell(col, v))
    num = _numeric(col)
    exact = f' data-value="{escape(str(v))}"' if _money_col(col) and v is not None else ""
    return f'<td data-col="{escape(col)}"{exact}{" class=n" if num else ""}>{escape(text)}</td>'


def table(rows: list[dict], columns: list[str], table_id: str, texts: dict | None = None) -> str:
    """`texts`: (row index, column) -> text shown instead of the formatted value."""
    texts = texts or {}
    head = "".join(f'<th{" class=n" if _numeric(c) else ""}>{escape(human.label(c))}</th>' for c in columns)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="total"' if "TOTAL" in (r.get("team"), r.get("workflow")) else ""
        body.append(f"<tr{cls}>" + "".join(_cell(c, r.get(c), texts.get((i, c))) for c in columns) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


# --- charts ------------------------------------------------------------------------------------------------

def nice_step(top: int, n: int = 4) -> int:
    """A round step (1, 2, 2.5 or 5 x 10^k) that covers [0, top] in about n ticks."""
    raw = max(top / n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    return int(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))


def _tick_usd(nanos: int) -> str:
    d = from_nanos(nanos)
    return f"${d:,.0f}" if d >= 10 else (f"${d:,.2f}" if d >= Decimal("0.01") else f"${d.normalize():f}")


class Plot:
    """A chart area with y gridlines and ticks (money), x ticks and axis labels."""

    def __init__(self, w: int, h: int, x0: float, x1: float, top: int, *, left: int = 58, right: int = 14,
                 top_pad: int = 26, bottom: int = 38) -> None:
        self.w, self.h, self.x0, self.x1 = w, h, x0, x1
        self.left, self.right, self.top_pad, self.bottom = left, right, top_pad, bottom
        self.step = nice_step(max(top, 1))
        self.ymax = self.step * max(1, math.ceil(max(top, 1) / self.step))

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1
        return round(self.left + (min(max(v, self.x0), self.x1) - self.x0) * (self.w - self.left - self.right) / span, 1)

    def y(self, nanos: int) -> float:
        return round(self.h - self.bottom - nanos * (self.h - self.bottom - self.top_pad) / self.ymax, 1)

    def axes(self, x_ticks: list[tuple[float, str]], y_label: str, x_label: str) -> str:
        out = []
        v = 0
        while v <= self.ymax:
            y = self.y(v)
            out.append(f'<line x1="{self.left}" y1="{y}" x2="{self.w - self.right}" y2="{y}" stroke="#e5e7eb"/>'
                       f'<text class="tick y-tick" x="{self.left - 6}" y="{y + 4}" text-anchor="end">'
                       f"{escape(_tick_usd(v))}</text>")
            v += self.step
        base = self.h - self.bottom
        out.append(f'<line x1="{self.left}" y1="{base}" x2="{self.w - self.right}" y2="{base}" stroke="#6b7280"/>'
                   f'<line x1="{self.left}" y1="{self.top_pad - 6}" x2="{self.left}" y2="{base}" stroke="#6b7280"/>')
        for xv, text in x_ticks:
            x = self.x(xv)
            anchor = ("start" if x <= self.left + 20 else "end" if x >= self.w - self.right - 20 else "middle")
            out.append(f'<line x1="{x}" y1="{base}" x2="{x}" y2="{base + 4}" stroke="#6b7280"/>'
                       f'<text class="tick x-tick" x="{x}" y="{base + 16}" text-anchor="{anchor}">{escape(text)}</text>')
        out.append(f'<text class="axis-label" x="{self.left}" y="{self.top_pad - 10}">{escape(y_label)}</text>'
                   f'<text class="axis-label" x="{self.w - self.right}" y="{self.h - 4}" text-anchor="end">'
                   f"{escape(x_label)}</text>")
        return "".join(out)

    def svg(self, label: str, body: str) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.w} {self.h}" role="img" '
                f'aria-label="{escape(label)}">{body}</svg>')


def _day_ticks(days: list[date], n: int) -> list[tuple[float, str]]:
    if not days:
        return []
    if len(days) <= n:
        idx = range(len(days))
    else:
        idx = sorted({round(i * (len(days) - 1) / (n - 1)) for i in range(n)})
    return [(i, days[i].isoformat()) for i in idx]


def stacked_days(series: dict[str, dict[date, int]], days: list[date], colors: dict[str, str]) -> str:
    """Spend per day, every team stacked: the height is the day's total."""
    if not days:
        return "<p>no spend in this period</p>"
    totals = [sum(s.get(d, 0) for s in series.values()) for d in days]
    p = Plot(1140, 300, -0.5, len(days) - 0.5, max(totals))
    bw = max((p.w - p.left - p.right) / len(days) * 0.72, 1)
    bars = []
    order = sorted(series, key=lambda t: -sum(series[t].values()))
    for i, d in enumerate(days):
        acc = 0
        for team in order:
            v = series[team].get(d, 0)
            if v <= 0:
                continue
            y0, y1 = p.y(acc), p.y(acc + v)
            bars.append(f'<rect x="{round(p.x(i) - bw / 2, 1)}" y="{y1}" width="{round(bw, 1)}" '
                        f'height="{max(round(y0 - y1, 1), 0.5)}" fill="{colors[team]}"><title>{escape(team)} '
                        f"{d.isoformat()}: {escape(human.usd_nanos(v))}</title></rect>")
            acc += v
    return p.svg("spend per day, all teams stacked",
                 p.axes(_day_ticks(days, 6), "USD per day", "day (UTC)") + "".join(bars))


def team_line(team: str, color: str, values: dict[date, int], days: list[date]) -> str:
    """One team's spend per day on its own scale."""
    p = Plot(370, 190, 0, max(len(days) - 1, 1), max(values.values(), default=0), left=52)
    pts = " ".join(f"{p.x(i)},{p.y(values.get(d, 0))}" for i, d in enumerate(days))
    area = f"{p.x(0)},{p.y(0)} {pts} {p.x(len(days) - 1)},{p.y(0)}"
    total = sum(values.values())
    return (f"<figure><h3>{escape(team)}: {escape(human.usd_nanos(total))}</h3>"
            + p.svg(f"spend per day, {team}", p.axes(_day_ticks(days, 3), "USD per day", "day")
                    + f'<polygon points="{area}" fill="{color}" fill-opacity="0.12"/>'
                    f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"><title>{escape(team)}'
                    f"</title></polyline>") + "</figure>")


def legend(colors: dict[str, str]) -> str:
    return '<div class="legend">' + "".join(f'<span><i class="sw" style="background:{c}"></i>{escape(n)}</span>'
                                            for n, c in colors.items()) + "</div>"


def burn_chart(b: dict) -> str:
    """Cumulative spend against the budget line, and the forecast to period end."""
    start, end, now = b["period_start"], b["period_end"], b["now"]
    t0, t1 = start.timestamp(), end.timestamp()
    cum, pts, peak = 0, [(t0, 0)], 0
    for d, v in b["daily"]:
        cum += v
        t = datetime(d.year, d.month, d.day, tzinfo=timezone.utc) + timedelta(days=1)
        pts.append((min(t, now).timestamp(), cum))
        peak = max(peak, cum)
    pts.append((now.timestamp(), b["spend_nanos"]))
    top = max(b["amount_nanos"], b["forecast_nanos"], b["spend_nanos"], peak)
    p = Plot(370, 220, t0, t1, top * 21 // 20, left=56, bottom=44)
    span = end - start
    if span <= timedelta(days=2):
        fmt = "%H:%M"
        ticks = [(t0 + (t1 - t0) * k / 4, (start + span * k / 4).strftime(fmt)) for k in range(4)]
        ticks.append((t1, "24:00" if span == timedelta(days=1) else end.strftime(fmt)))
    else:  # the last tick is the period's last day (its end is the next day's midnight)
        fmt = "%Y-%m-%d"
        ticks = [(t0, start.strftime(fmt)), ((t0 + t1) / 2, (start + span / 2).strftime(fmt)),
                 (t1, (end - timedelta(seconds=1)).strftime(fmt))]
    line = " ".join(f"{p.x(t)},{p.y(v)}" for t, v in pts)
    ya = p.y(b["amount_nanos"])
    body = (p.axes(ticks, "cumulative USD", "UTC" if fmt == "%H:%M" else "day")
            + f'<line x1="{p.left}" y1="{ya}" x2="{p.w - p.right}" y2="{ya}" stroke="#dc2626" stroke-width="1.5" '
            f'stroke-dasharray="5 3"><title>budget {escape(human.usd_nanos(b["amount_nanos"]))}</title></line>'
            f'<text x="{p.left + 4}" y="{ya - 4}" fill="#dc2626">budget '
            f'{escape(human.usd_nanos(b["amount_nanos"]))}</text>'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{line}"><title>spend</title></polyline>')
    if now < end:
        body += (f'<line x1="{p.x(now.timestamp())}" y1="{p.y(b["spend_nanos"])}" x2="{p.x(t1)}" '
                 f'y2="{p.y(b["forecast_nanos"])}" stroke="#9333ea" stroke-width="2" stroke-dasharray="6 4">'
                 f'<title>forecast {escape(human.usd_nanos(b["forecast_nanos"]))}</title></line>')
    keys = [("spend", "#2563eb"), *([("forecast", "#9333ea")] if now < end else []), ("budget", "#dc2626")]
    body += (f'<g class="legend" transform="translate({p.left},{p.h - 6})">' + "".join(
        f'<rect x="{76 * i}" width="10" height="3" y="-4" fill="{c}"/><text x="{76 * i + 14}" y="0">{k}</text>'
        for i, (k, c) in enumerate(keys)) + "</g>")
    state = b["state"]
    head = (f'<h3>{escape(b["budget"])} · {escape(b["period"])} · {escape(human.pct(b["pct_used"]))} used · '
            f'<span class="state" style="color:{STATE_COLOR.get(state, "#111")}">{escape(state)}</span></h3>')
    return f"<figure>{head}{p.svg('burn-down ' + b['budget'], body)}</figure>"


def bar_chart(items: list[tuple[str, int]]) -> str:
    """Top workflows by cost, with a money axis."""
    if not items:
        return "<p>no spend in this period</p>"
    h = 40 + 24 * len(items)
    p = Plot(1140, h, 0, 1, 0, left=230, right=40, top_pad=10, bottom=30)
    top = max(v for _, v in items)
    p.step = nice_step(top)
    p.ymax = p.step * max(1, math.ceil(top / p.step))
    width = p.w - p.left - p.right

    def xv(v: int) -> float:
        return round(p.left + v * width / p.ymax, 1)

    out = []
    v = 0
    while v <= p.ymax:
        out.append(f'<line x1="{xv(v)}" y1="{p.top_pad}" x2="{xv(v)}" y2="{h - p.bottom}" stroke="#e5e7eb"/>'
                   f'<text class="tick x-tick" x="{xv(v)}" y="{h - p.bottom + 14}" text-anchor="middle">'
                   f"{escape(_tick_usd(v))}</text>")
        v += p.step
    for i, (name, v) in enumerate(items):
        y = p.top_pad + 4 + i * 24
        out.append(f'<text x="{p.left - 8}" y="{y + 13}" text-anchor="end">{escape(name)}</text>'
                   f'<rect x="{p.left}" y="{y}" width="{max(xv(v) - p.left, 1)}" height="16" fill="#2563eb"/>'
                   f'<text x="{xv(v) + 6 if xv(v) < p.w - 90 else xv(v) - 6}" y="{y + 13}" '
                   f'text-anchor="{"start" if xv(v) < p.w - 90 else "end"}" '
                   f'{"" if xv(v) < p.w - 90 else "fill=#fff "}>{escape(human.usd_nanos(v))}</text>')
    out.append(f'<text class="axis-label" x="{p.w - p.right}" y="{h - 2}" text-anchor="end">USD in the period</text>'
               f'<text class="axis-label" x="4" y="{p.top_pad - 2}">team/workflow</text>')
    return p.svg("top workflows", "".join(out))


# --- the page ------------------------------------------------------------------------------------------------

METHOD_TEXT = {"weekday-seasonal": "the last 7 complete days' rate, adjusted for the day of the week from the last "
                                   "28 days",
               "linear": "the trailing 24-hour rate blended with the period-to-date average"}


def _kpi(label: str, value: str, detail: str = "", kpi_id: str = "") -> str:
    return (f'<div class="kpi"{f" id={kpi_id}" if kpi_id else ""}><div class="l">{escape(label)}</div>'
            f'<div class="v">{escape(value)}</div><div class="d">{escape(detail)}</div></div>')


def render(title: str, start: datetime, end: datetime, team_rows: list[dict], team_cols: list[str], daily: list[dict],
           budgets: list[dict], workflows: list[dict], now: datetime, earlier: bool = True,
           generated: datetime | None = None) -> str:
    """The page. `earlier`: the store has usage before `start` (else the previous period reads
    "no earlier data" rather than zeros)."""
    total = next((r for r in team_rows if r.get("team") == "TOTAL"), None) or {}
    body_rows = [r for r in team_rows if r.get("team") != "TOTAL"]
    for r in team_rows:
        r["tokens"] = sum(r.get(k, 0) or 0 for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                                                        "cache_write_1h_tokens", "output_tokens",
                                                        *MODALITY_COLS))
    compare = "previous_cost_usd" in team_cols
    cols = ["team", *[c for c in TEAM_COLUMNS if c in team_cols or c == "tokens"]]
    if not any(r.get("runs") for r in team_rows):
        cols = [c for c in cols if c not in ("runs", "cost_per_run_usd")]
    if not any(r.get("unpriced_events") for r in team_rows):
        cols.remove("unpriced_events")
    texts: dict = {}
    for i, r in enumerate(team_rows):
        if compare and not earlier:
            texts[(i, "previous_cost_usd")] = NO_EARLIER
            texts[(i, "change_pct")] = "—"
        elif compare and r.get("change_pct") is None:
            texts[(i, "change_pct")] = "new" if r.get("cost_nanos") else "—"

    # headline
    cost = total.get("cost_nanos", 0)
    if not compare:
        change = ("", "")
    elif not earlier:
        change = (NO_EARLIER, "nothing stored before this period")
    else:
        prev = total.get("previous_cost_usd")
        change = (human.pct(total.get("change_pct"), signed=True) if total.get("change_pct") is not None else "—",
                  f"previous period {human.usd(prev)}")
    over = [b for b in budgets if b["state"] == "over"]
    top_team = max(body_rows, key=lambda r: r.get("cost_nanos", 0), default=None)
    kpis = "".join([
        _kpi("total spend", human.usd_nanos(cost), f"{start:%Y-%m-%d} to {(end - timedelta(seconds=1)):%Y-%m-%d}",
             "kpi-total"),
        _kpi("change", *change, kpi_id="kpi-change") if compare else "",
        _kpi("requests", human.count(total.get("requests", 0)),
             f"{human.usd(total.get('cost_per_request_usd'), unit=True)} per request (model calls)"
             if total.get("cost_per_request_usd") is not None else "no model calls"),
        _kpi("largest team", top_team["team"] if top_team else "—",
             human.usd_nanos(top_team["cost_nanos"]) if top_team else ""),
        _kpi("budgets over", f"{len(over)} of {len(budgets)}" if budgets else "no budgets",
             ", ".join(b["budget"] for b in over) or ("none over" if budgets else "pass --budgets FILE")),
    ])

    # spend per day
    series: dict[str, dict[date, int]] = defaultdict(dict)
    for r in daily:
        series[r["team"]][r["day"].date()] = series[r["team"]].get(r["day"].date(), 0) + r["cost_nanos"]
    days = []
    d = start.date()
    while d < end.date() and len(days) < 400:
        days.append(d)
        d += timedelta(days=1)
    order = sorted(series, key=lambda t: -sum(series[t].values()))
    colors = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(order)}
    small = "".join(team_line(t, colors[t], series[t], days) for t in order)

    # budgets
    bcols = ["budget", "period", "spend_usd", "amount_usd", "pct_used", "forecast_usd", "state", "exhausted_at",
             "method"]
    btexts = {}
    for i, b in enumerate(budgets):
        btexts[(i, "state")] = b["state"]
        if b.get("exhausted_at") is None:
            btexts[(i, "exhausted_at")] = "not this period"
    burn = "".join(burn_chart(b | {"now": now}) for b in budgets)
    methods = "; ".join(f"<b>{escape(k)}</b>: {escape(v)}" for k, v in METHOD_TEXT.items())

    wf = [r for r in workflows if r.get("workflow") != "TOTAL"][:10]
    generated = generated or datetime.now(timezone.utc)
    team_table = table(team_rows, cols, "by-team", texts)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
        f"content='width=device-width,initial-scale=1'><title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>"
        f'<p class="sub">{start:%Y-%m-%d} to {(end - timedelta(seconds=1)):%Y-%m-%d} (UTC) · budgets as of '
        f"{escape(human.when(now))} · amounts in US dollars</p>"
        f'<div class="kpis">{kpis}</div>'
        f"<h2>Spend by team</h2>{team_table}"
        f'<p class="note">Cost per request counts model calls only (GPU hours have no requests). '
        + ("Previous period: the same length just before this one. " if compare else "")
        + f"Unpriced events: calls to a model not in the price catalogue.</p>"
        f"<h2>Spend per day</h2>{stacked_days(series, days, colors)}{legend(colors)}"
        f'<p class="note">Each team on its own scale:</p><div class="grid">{small}</div>'
        f"<h2>Budgets</h2>"
        + (table(budgets, bcols, "budgets", btexts) + f'<div class="grid">{burn}</div>'
           f'<p class="note">Forecast to period end — {methods}.</p>' if budgets else
           '<p id="no-budgets">No budgets: pass <code>--budgets FILE</code> or set '
           "<code>budgets.budgets_file</code> in costwarden.yaml.</p>")
        + f"<h2>Top workflows</h2>{bar_chart([(r['team'] + '/' + r['workflow'], r['cost_nanos']) for r in wf])}"
        f"{table(wf, ['team', 'workflow', 'requests', 'cost_usd', 'cost_per_request_usd'], 'workflows')}"
        f"<footer>Generated {escape(human.when(generated))} by costwarden from the stored usage. Exact amounts, to "
        f"the nano-dollar: <code>costwarden report-finance --format csv</code>.</footer></main></body></html>")


def build(store, budgets, start: datetime, end: datetime, now: datetime, title: str) -> str:
    """Query everything the page shows: the team report (as `report-finance --by team`), daily spend
    per team, the budgets' burn and forecast at `now`, and the workflows by cost."""
    from costwarden.finance.burn import budget_forecasts
    from costwarden.finance.queries import DailyQuery
    from costwarden.finance.reports import finance_report
    from costwarden.reports import stored_days

    now = min(now, end - timedelta(microseconds=1))  # the budgets' periods containing the report's end
    team_rows, team_cols = finance_report(store, ["team"], start, end)
    wf_rows, _ = finance_report(store, ["team", "workflow"], start, end, compare=False)
    daily = store.query(DailyQuery(["team"], start, end).to_sql())
    fc = budget_forecasts(store, budgets, now) if budgets is not None else []
    for b in fc:
        for k in ("spend", "amount", "forecast", "linear_forecast"):
            b[f"{k}_usd"] = from_nanos(b[f"{k}_nanos"])
        b["pct_used"] = (Decimal(b["spend_nanos"]) * 100 / Decimal(b["amount_nanos"])).quantize(Decimal("0.1")) \
            if b["amount_nanos"] else None
        b["state"] = ("over" if b["spend_nanos"] >= b["amount_nanos"] else
                      "at-risk" if b["forecast_nanos"] >= b["amount_nanos"] else "ok")
    span = stored_days(store)
    earlier = span is not None and span[0] < start.date()
    return render(title, start, end, team_rows, team_cols, daily, fc, wf_rows, now, earlier)
