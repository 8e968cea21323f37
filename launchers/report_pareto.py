"""The accuracy-vs-TPF Pareto front (both higher is better); no plotting here, tables use it too."""
from __future__ import annotations

from typing import Sequence

from launchers.report_collect import ReportRow


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: (tpf, accuracy), both higher-is-better.
    A point is dominated when another is >= on both and > on one; equal points are all kept."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox >= x and oy >= y and (ox > x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def on_front(rows: Sequence[ReportRow]) -> list[bool | None]:
    """Per row (one benchmark's rows): on the front, or None when accuracy or TPF is missing."""
    known = [i for i, r in enumerate(rows) if r.accuracy is not None and r.tpf is not None]
    front = {known[k] for k in pareto_front([(float(rows[i].tpf), float(rows[i].accuracy)) for i in known])}
    return [(i in front) if i in known else None for i in range(len(rows))]
