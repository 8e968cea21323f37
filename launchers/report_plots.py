"""The report's pictures (matplotlib, Agg canvas; no pyplot state, no network): accuracy vs TPF per
benchmark with the Pareto front, and the acceptance-length histogram of each linear-spec run."""
from __future__ import annotations

import io
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from launchers.report_collect import ReportRow
from launchers.report_pareto import pareto_front

MODE_COLORS = {"ar": "#4C72B0", "dlm": "#DD8452", "linear_spec": "#55A868"}


def short_label(row: ReportRow) -> str:
    k = row.knobs
    parts = [str(k.get("mode") or "?")]
    if k.get("block_length") is not None:
        parts.append(f"b{k['block_length']}")
    if k.get("threshold") is not None:
        parts.append(f"t{k['threshold']:g}")
    if k.get("lora"):
        parts.append("lora")
    return " ".join(parts)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def accuracy_vs_tpf(bench: str, rows: list[ReportRow]) -> bytes | None:
    """PNG bytes, or None when no run of this benchmark has both accuracy and TPF."""
    pts = [r for r in rows if r.accuracy is not None and r.tpf is not None]
    if not pts:
        return None
    xy = [(float(r.tpf), float(r.accuracy)) for r in pts]
    front = pareto_front(xy)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for mode in sorted({str(r.knobs.get("mode")) for r in pts}):
        sel = [p for r, p in zip(pts, xy) if str(r.knobs.get("mode")) == mode]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=46, color=MODE_COLORS.get(mode, "#8172B2"),
                   label=mode, zorder=3)
    line = sorted((xy[i] for i in front), key=lambda p: (p[0], -p[1]))
    ax.plot([p[0] for p in line], [p[1] for p in line], "--", color="#C44E52", lw=1.4, zorder=2,
            label="Pareto front")
    ax.scatter([p[0] for p in line], [p[1] for p in line], s=150, facecolors="none", edgecolors="#C44E52",
               linewidths=1.6, zorder=4)
    labels: dict[tuple[float, float], list[str]] = {}
    for r, p in zip(pts, xy):   # runs on the same spot share one label instead of overprinting
        labels.setdefault(p, []).append(short_label(r))
    for (x, y), names in labels.items():
        ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_ylim(*_accuracy_range([p[1] for p in xy]))
    metric = next((r.metric for r in pts if r.metric), "accuracy")
    ax.set(title=f"{bench}: accuracy vs tokens per forward", xlabel="TPF (completion tokens / NFE)",
           ylabel=f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def _accuracy_range(values: list[float]) -> tuple[float, float]:
    """Percentages: a window of at least 10 points around the data, inside [0, 100] when the data is."""
    lo, hi = min(values), max(values)
    pad = max(5.0, (hi - lo) * 0.1)
    low = max(0.0, lo - pad) if lo >= 0 else lo - pad
    high = min(100.0, hi + pad) if hi <= 100 else hi + pad
    if high - low < 10:
        low, high = (low, low + 10) if low <= 0 else (high - 10, high)
    return low - 1, high + 1


def acceptance_histogram(row: ReportRow) -> bytes | None:
    if not row.acceptance:
        return None
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.add_subplot()
    low, top = min(row.acceptance), max(row.acceptance)
    ax.hist(row.acceptance, bins=[b - 0.5 for b in range(low, top + 2)], color="#55A868", edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axvline(row.acceptance_mean, color="#C44E52", ls="--", lw=1.2, label=f"mean {row.acceptance_mean:.2f}")
    ax.set(title=f"{row.benchmark}: acceptance length ({short_label(row)})",
           xlabel="tokens committed per speculation cycle (accepted + bonus)", ylabel="cycles")
    ax.legend(fontsize=8)
    return _png(fig)
