"""Server-rendered SVG charts (no JavaScript): one metric across the versions of a collection."""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

__all__ = ["metric_chart"]

_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 720, 240, 64, 16, 16, 40


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _label(x: float) -> str:
    return f"{x:.4g}"


def metric_chart(metric: str, points: list[tuple[str, object]], chart_id: str = "chart") -> str:
    """An SVG line chart of `metric` over (version, value) pairs in link order; versions
    without a numeric value are skipped. Every value from the store is escaped."""
    pts = [(v, n) for v, n in ((v, _num(x)) for v, x in points) if n is not None]
    title = f"{metric} across versions"
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_W} {_H}" role="img" '
            f'aria-labelledby={quoteattr(chart_id + "-title")}><title id={quoteattr(chart_id + "-title")}>'
            f"{escape(title)}</title>")
    if not pts:
        return (head + f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="muted">'
                f"no version has a numeric {escape(metric)}</text></svg>")
    lo, hi = min(n for _, n in pts), max(n for _, n in pts)
    if lo == hi:
        lo, hi = lo - 1 if lo else -1, hi + 1 if hi else 1
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / max(1, len(pts) - 1)

    def xy(i: int, n: float) -> tuple[float, float]:
        x = _LEFT + (i * step if len(pts) > 1 else plot_w / 2)
        return x, _TOP + plot_h * (1 - (n - lo) / (hi - lo))

    coords = [xy(i, n) for i, (_, n) in enumerate(pts)]
    out = [head,
           f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}" class="axis"/>',
           f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" class="axis"/>',
           f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" class="tick">{escape(_label(hi))}</text>',
           f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" class="tick">{escape(_label(lo))}</text>',
           f'<text x="{_LEFT}" y="{_H - 12}" class="tick">{escape(pts[0][0])}</text>',
           f'<text x="{_W - _RIGHT}" y="{_H - 12}" text-anchor="end" class="tick">{escape(pts[-1][0])}</text>',
           '<polyline class="line" fill="none" points="'
           + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>']
    if len(pts) <= 200:  # a dot per version while they can be told apart
        for (version, n), (x, y) in zip(pts, coords):
            out.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                       f"<title>{escape(f'{version}: {metric} = {_label(n)}')}</title></circle>")
    out.append("</svg>")
    return "".join(out)
