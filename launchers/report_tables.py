"""The report's tables: one per benchmark, as CSV (full precision), markdown and a rich console table."""
from __future__ import annotations

import csv
import io
from typing import Any, Callable

from launchers.report_collect import KNOB_COLUMNS, ReportRow

COLUMNS = (*KNOB_COLUMNS, "accuracy", "tpf", "average_nfe", "tokens_per_s", "acceptance_mean", "num_entries",
           "metric", "eval_mode", "experiment", "source")
# What the markdown and console tables show (CSV has everything).
SHOWN = (*KNOB_COLUMNS, "accuracy", "tpf", "average_nfe", "tokens_per_s", "acceptance_mean", "num_entries",
         "experiment")


def by_benchmark(rows: list[ReportRow]) -> dict[str, list[ReportRow]]:
    out: dict[str, list[ReportRow]] = {}
    for row in rows:
        out.setdefault(row.benchmark, []).append(row)
    return out


def row_values(row: ReportRow) -> dict[str, Any]:
    return {**row.knobs, "accuracy": row.accuracy, "tpf": row.tpf, "average_nfe": row.average_nfe,
            "tokens_per_s": row.tokens_per_s, "acceptance_mean": row.acceptance_mean,
            "num_entries": row.num_entries, "metric": row.metric, "eval_mode": row.eval_mode,
            "experiment": row.experiment, "source": row.source}


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)   # repr: reads back to the same float


def to_csv(rows: list[ReportRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("benchmark", *COLUMNS))
    for row in rows:
        values = row_values(row)
        writer.writerow((row.benchmark, *(_csv_cell(values[c]) for c in COLUMNS)))
    return buf.getvalue()


def display(column: str, value: Any) -> str:
    """Readable text of one cell (markdown, console, HTML)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    formats: dict[str, Callable[[Any], str]] = {
        "accuracy": "{:.2f}".format, "tpf": "{:.3f}".format, "average_nfe": "{:.1f}".format,
        "tokens_per_s": "{:.1f}".format, "acceptance_mean": "{:.2f}".format, "threshold": "{:g}".format,
        "temperature": "{:g}".format}
    return formats[column](value) if column in formats else str(value)


def table_cells(rows: list[ReportRow]) -> list[list[str]]:
    return [[display(c, row_values(r)[c]) for c in SHOWN] for r in rows]


def to_markdown(rows: list[ReportRow]) -> str:
    parts = ["# Accuracy vs tokens per forward", ""]
    for bench, group in by_benchmark(rows).items():
        metric = next((r.metric for r in group if r.metric), "accuracy")
        parts += [f"## {bench}", "", f"accuracy = {metric} (%, {group[0].eval_mode}); "
                  "tpf = completion tokens / forward passes", "",
                  "| " + " | ".join(SHOWN) + " |", "|" + "---|" * len(SHOWN)]
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in table_cells(group)]
        parts.append("")
    return "\n".join(parts)


def print_rich(rows: list[ReportRow]) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(width=200, soft_wrap=False)
    for bench, group in by_benchmark(rows).items():
        table = Table(title=f"{bench} ({len(group)} runs)", show_lines=False)
        for column in SHOWN:
            numeric = column not in ("mode", "lora", "experiment")
            table.add_column(column, justify="right" if numeric else "left", overflow="fold")
        for cells in table_cells(group):
            table.add_row(*cells)
        console.print(table)
