"""A self-contained HTML report: inline SVG charts and CSS, no script, no network, no CDN.

Sections: spend by team (the same rows as the CSV report, exact to the micro-dollar), spend over
time per team (daily lines), budget burn-down with forecast (cumulative spend, amount line, dashed
projection to period end, method and exhaustion stated), top workflows (bars). Every number cell
carries `data-col` so a browser test can read the rendered page back. Pixel maths is integer.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from html import escape

from costwarden.money import fmt_usd

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")
CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#111}h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px}td.n{text-align:right;
font-variant-numeric:tabular-nums}th{background:#f3f4f6}svg{background:#fafafa;border:1px solid #eee}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}"""


def _cell(col: str, v) -> str:
    text = "" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
    num = isinstance(v, (int,)) or (text and text.replace(".", "", 1).replace("-", "", 1).isdigit())
    return f'<td data-col="{escape(col)}"{" class=n" if num else ""}>{escape(text)}</td>'


def table(rows: list[dict], columns: list[str], table_id: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(c, r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _scale(v: int, top: int, px: int) -> int:
    return 0 if top <= 0 else v * px // top


def line_chart(series: dict[str, list[tuple[date, int]]], days: list[date], w: int = 760, h: int = 240) -> str:
    if not days:
        return "<p>no data</p>"
    top = max([v for pts in series.values() for _, v in pts] + [1])
    pad, n = 50, max(len(days) - 1, 1)
    idx = {d: i for i, d in enumerate(days)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 30}" role="img" '
             f'aria-label="spend over time per team">',
             f'<text x="4" y="14" font-size="11">{escape(fmt_usd(top))}/day</text>',
             f'<line x1="{pad}" y1="{h}" x2="{w - 10}" y2="{h}" stroke="#999"/>',
             f'<text x="{pad}" y="{h + 16}" font-size="11">{days[0]}</text>',
             f'<text x="{w - 90}" y="{h + 16}" font-size="11">{days[-1]}</text>']
    for k, (name, pts) in enumerate(sorted(series.items())):
        vals = dict(pts)
        xy = " ".join(f"{pad + idx[d] * (w - pad - 10) // n},{h - _scale(vals.get(d, 0), top, h - 20)}" for d in days)
        parts.append(f'<polyline fill="none" stroke="{PALETTE[k % len(PALETTE)]}" stroke-width="2" points="{xy}">'
                     f'<title>{escape(name)}</title></polyline>')
    parts.append("</svg>")
    legend = "".join(f'<span><i class="sw" style="background:{PALETTE[k % len(PALETTE)]}"></i>{escape(n)}</span>'
                     for k, n in enumerate(sorted(series)))
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def burn_chart(b: dict, w: int = 360, h: int = 160) -> str:
    start, end, now = b["period_start"], b["period_end"], b["now"]
    span = int((end - start).total_seconds()) or 1
    top = max(b["amount_micros"], b["forecast_micros"], b["spend_micros"], 1)

    def x(t: datetime) -> int:
        return 10 + int((min(max(t, start), end) - start).total_seconds()) * (w - 20) // span

    def y(v: int) -> int:
        return h - 10 - _scale(v, top, h - 30)

    cum, pts = 0, [f"{x(start)},{y(0)}"]
    for d, v in b["daily"]:
        cum += v
        t = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        pts.append(f"{x(min(t.replace(hour=23, minute=59), now))},{y(cum)}")
    pts.append(f"{x(now)},{y(b['spend_micros'])}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
            f'aria-label="burn-down {escape(b["budget"])}">'
            f'<line x1="10" y1="{y(b["amount_micros"])}" x2="{w - 10}" y2="{y(b["amount_micros"])}" stroke="#dc2626" '
            f'stroke-dasharray="2 2"><title>budget {escape(fmt_usd(b["amount_micros"]))}</title></line>'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{" ".join(pts)}"/>'
            f'<line x1="{x(now)}" y1="{y(b["spend_micros"])}" x2="{x(end)}" y2="{y(b["forecast_micros"])}" '
            f'stroke="#9333ea" stroke-width="2" stroke-dasharray="6 4"><title>forecast</title></line>'
            f'<text x="12" y="14" font-size="11">{escape(b["budget"])} {escape(b["period"])}</text></svg>')


def bar_chart(items: list[tuple[str, int]], w: int = 760) -> str:
    if not items:
        return "<p>no data</p>"
    top = max(v for _, v in items) or 1
    rows = []
    for i, (name, v) in enumerate(items):
        y = 6 + i * 22
        rows.append(f'<text x="4" y="{y + 13}" font-size="12">{escape(name)}</text>'
                    f'<rect x="230" y="{y}" width="{max(_scale(v, top, w - 340), 1)}" height="16" fill="#2563eb"/>'
                    f'<text x="{236 + _scale(v, top, w - 340)}" y="{y + 13}" font-size="12">{escape(fmt_usd(v))}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{12 + 22 * len(items)}" role="img" '
            f'aria-label="top workflows">{"".join(rows)}</svg>')


def render(title: str, start: datetime, end: datetime, team_rows: list[dict], team_cols: list[str], daily: list[dict],
           budgets: list[dict], workflows: list[dict], now: datetime) -> str:
    series: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for r in daily:
        series[r["team"]].append((r["day"].date(), r["cost_micros"]))
    days = sorted({r["day"].date() for r in daily})
    bcols = ["budget", "period", "spend_usd", "amount_usd", "forecast_usd", "linear_forecast_usd", "method",
             "exhausted_at"]
    wf = [r for r in workflows if r.get("workflow") != "TOTAL"][:10]
    burn = "".join(burn_chart(b | {"now": now}) for b in budgets)
    from costwarden.finance.forecast import METHODS

    methods = "; ".join(f"<b>{escape(k)}</b>: {escape(v)}" for k, v in METHODS.items())
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            f"<p>{start:%Y-%m-%d} .. {end:%Y-%m-%d %H:%M} UTC, budgets as of {now:%Y-%m-%d %H:%M} UTC, from the rollups; amounts in USD, exact to the "
            f"micro-dollar.</p><h2>Spend by team</h2>{table(team_rows, team_cols, 'by-team')}"
            f"<h2>Spend over time per team</h2>{line_chart(dict(series), days)}"
            f"<h2>Budget burn-down with forecast</h2>{burn or '<p>no budgets</p>'}"
            f"{table(budgets, bcols, 'budgets')}<p>Methods: {methods}</p>"
            f"<h2>Top workflows</h2>{bar_chart([(r['team'] + '/' + r['workflow'], r['cost_micros']) for r in wf])}"
            f"{table(wf, ['team', 'workflow', 'requests', 'cost_usd', 'cost_per_request_usd'], 'workflows')}"
            "</body></html>")


def build(store, budgets, start: datetime, end: datetime, now: datetime, title: str) -> str:
    """Query everything the page shows: the team report (as `report-finance --by team`), daily spend
    per team, the budgets' burn and forecast at `now`, and the workflows by cost."""
    from costwarden.finance.burn import budget_forecasts
    from costwarden.finance.queries import DailyQuery
    from costwarden.finance.reports import finance_report
    from costwarden.money import from_micros

    now = min(now, end - timedelta(microseconds=1))  # the budgets' periods containing the report's end
    team_rows, team_cols = finance_report(store, ["team"], start, end)
    wf_rows, _ = finance_report(store, ["team", "workflow"], start, end, compare=False)
    daily = store.query(DailyQuery(["team"], start, end).to_sql())
    fc = budget_forecasts(store, budgets, now) if budgets is not None else []
    for b in fc:
        for k in ("spend", "amount", "forecast", "linear_forecast"):
            b[f"{k}_usd"] = from_micros(b[f"{k}_micros"])
    return render(title, start, end, team_rows, team_cols, daily, fc, wf_rows, now)
