"""The burn-down chart of one budget, drawn on the server as inline SVG (no script, nothing to fetch):
cumulative actual spend, the forecast to period end, the budget line and each threshold."""
from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from costwarden import human
from costwarden.finance.html import Plot

ACTUAL, FORECAST, BUDGET, THRESHOLD = "#2563eb", "#9333ea", "#dc2626", "#b45309"


def _ticks(start: datetime, end: datetime, tz) -> list[tuple[float, str]]:
    t0, t1 = start.timestamp(), end.timestamp()
    span = end - start
    if span <= timedelta(days=2):
        return [(t0 + (t1 - t0) * k / 4, (start + span * k / 4).astimezone(tz).strftime("%H:%M")) for k in range(5)]
    last = (end - timedelta(seconds=1)).astimezone(tz)
    return [(t0, start.astimezone(tz).strftime("%m-%d")), ((t0 + t1) / 2, (start + span / 2).astimezone(tz)
            .strftime("%m-%d")), (t1, last.strftime("%m-%d"))]


def burn_down(b: dict, tz) -> str:
    """`b`: budget, period_start, period_end, now, points [(instant, cumulative nanos)], spend_nanos,
    amount_nanos, forecast_nanos, thresholds [(label, nanos)]."""
    start, end, now = b["period_start"], b["period_end"], min(b["now"], b["period_end"])
    t0, t1 = start.timestamp(), end.timestamp()
    pts = [(t0, 0), *[(t.timestamp(), v) for t, v in b["points"] if start <= t <= now], (now.timestamp(),
                                                                                         b["spend_nanos"])]
    lines = [v for _, v in b["thresholds"]]
    top = max(b["amount_nanos"], b["forecast_nanos"], b["spend_nanos"], *lines, *(v for _, v in pts))
    p = Plot(420, 230, t0, t1, top * 21 // 20, left=60, bottom=46)
    body = [p.axes(_ticks(start, end, tz), "cumulative USD", "time" if end - start <= timedelta(days=2) else "day")]
    for label, v in b["thresholds"]:
        y = p.y(v)
        body.append(f'<line class="threshold" x1="{p.left}" y1="{y}" x2="{p.w - p.right}" y2="{y}" '
                    f'stroke="{THRESHOLD}" stroke-width="1" stroke-dasharray="2 3"><title>threshold '
                    f'{escape(label)}: {escape(human.usd_nanos(v))}</title></line><text x="{p.w - p.right - 2}" '
                    f'y="{y - 3}" text-anchor="end" fill="{THRESHOLD}">{escape(label)}</text>')
    ya = p.y(b["amount_nanos"])
    body.append(f'<line class="budget-line" x1="{p.left}" y1="{ya}" x2="{p.w - p.right}" y2="{ya}" stroke="{BUDGET}" '
                f'stroke-width="1.5" stroke-dasharray="6 3"><title>budget {escape(human.usd_nanos(b["amount_nanos"]))}'
                f'</title></line><text x="{p.left + 4}" y="{ya - 4}" fill="{BUDGET}">budget '
                f'{escape(human.usd_nanos(b["amount_nanos"]))}</text>')
    line = " ".join(f"{p.x(t)},{p.y(v)}" for t, v in pts)
    body.append(f'<polyline class="actual" fill="none" stroke="{ACTUAL}" stroke-width="2" points="{line}">'
                f'<title>spend {escape(human.usd_nanos(b["spend_nanos"]))}</title></polyline>')
    keys = [("actual", ACTUAL), ("budget", BUDGET)]
    if b["now"] < end:
        body.append(f'<line class="forecast" x1="{p.x(now.timestamp())}" y1="{p.y(b["spend_nanos"])}" x2="{p.x(t1)}" '
                    f'y2="{p.y(b["forecast_nanos"])}" stroke="{FORECAST}" stroke-width="2" stroke-dasharray="6 4">'
                    f'<title>forecast {escape(human.usd_nanos(b["forecast_nanos"]))}</title></line>')
        keys.insert(1, ("forecast", FORECAST))
    if b["thresholds"]:
        keys.append(("thresholds", THRESHOLD))
    body.append(f'<g transform="translate({p.left},{p.h - 6})">' + "".join(
        f'<rect x="{82 * i}" width="10" height="3" y="-4" fill="{c}"/><text x="{82 * i + 14}" y="0">{k}</text>'
        for i, (k, c) in enumerate(keys)) + "</g>")
    return p.svg(f"burn-down of {b['budget']}", "".join(body))
