"""The report's tables: one per benchmark, as CSV (full precision), markdown and a rich console table."""
from __future__ import annotations

import csv
import io
from typing import Any, Callable

from launchers.report_collect import KNOB_COLUMNS, ReportRow
from launchers.report_pareto import on_front

COLUMNS = (*KNOB_COLUMNS, "accuracy", "tpf", "pareto", "average_nfe", "tokens_per_s", "acceptance_mean",
           "num_entries", "metric", "eval_mode", "experiment", "source")
# Short console headers (an 80-column terminal must show them whole).
SHORT = {"block_length": "block", "tokens": "tok", "threshold": "thr", "temperature": "temp",
         "max_thinking_tokens": "think", "accuracy": "acc %", "average_nfe": "avg NFE", "tokens_per_s": "tok/s",
         "acceptance_mean": "acc.len", "pareto": "front", "num_entries": "n"}
# What the markdown and console tables show (CSV has everything).
SHOWN = (*KNOB_COLUMNS, "accuracy", "tpf", "pareto", "average_nfe", "tokens_per_s", "acceptance_mean", "num_entries",
         "experiment")


def by_benchmark(rows: list[ReportRow]) -> dict[str, list[ReportRow]]:
    out: dict[str, list[ReportRow]] = {}
    for row in rows:
        out.setdefault(row.benchmark, []).append(row)
    return out


def row_values(row: ReportRow, pareto: bool | None = None) -> dict[str, Any]:
    return {**row.knobs, "accuracy": row.accuracy, "tpf": row.tpf, "pareto": pareto, "average_nfe": row.average_nfe,
            "tokens_per_s": row.tokens_per_s, "acceptance_mean": row.acceptance_mean,
            "num_entries": row.num_entries, "metric": row.metric, "eval_mode": row.eval_mode,
            "experiment": row.experiment, "source": row.source}


def _csv_cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return ("yes" if value else "no") if column == "pareto" else ("on" if value else "off")
    return repr(value) if isinstance(value, float) else str(value)   # repr: reads back to the same float


def to_csv(rows: list[ReportRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("benchmark", *COLUMNS))
    for group in by_benchmark(rows).values():
        for row, pareto in zip(group, on_front(group)):
            values = row_values(row, pareto)
            writer.writerow((row.benchmark, *(_csv_cell(c, values[c]) for c in COLUMNS)))
    return buf.getvalue()


def display(column: str, value: Any) -> str:
    """Readable text of one cell (markdown, console, HTML)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return ("yes" if value else "no") if column == "pareto" else ("on" if value else "off")
    formats: dict[str, Callable[[Any], str]] = {
        "accuracy": "{:.2f}".format, "tpf": "{:.3f}".format, "average_nfe": "{:.1f}".format,
        "tokens_per_s": "{:.1f}".format, "acceptance_mean": "{:.2f}".format, "threshold": "{:g}".format,
        "temperature": "{:g}".format}
    return formats[column](value) if column in formats else str(value)


def table_cells(rows: list[ReportRow]) -> list[list[str]]:
    """Display cells of one benchmark's rows (the Pareto flag needs the whole group)."""
    return [[display(c, row_values(r, p)[c]) for c in SHOWN] for r, p in zip(rows, on_front(rows))]


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
    """Console tables; knobs equal in every row of a benchmark go to the title to keep the table narrow."""
    from rich.console import Console
    from rich.table import Table
    console = Console()
    for bench, group in by_benchmark(rows).items():
        cells = table_cells(group)
        columns = [c for c in SHOWN if c != "experiment"]
        same = [c for c in KNOB_COLUMNS if len({r[SHOWN.index(c)] for r in cells}) == 1]
        empty = [c for c in columns if all(r[SHOWN.index(c)] == "-" for r in cells)]
        columns = [c for c in columns if c not in same and c not in empty]
        fixed = ", ".join(f"{c}={cells[0][SHOWN.index(c)]}" for c in same)
        table = Table(title=f"{bench}: {len(group)} run(s)" + (f" ({fixed})" if fixed else ""))
        for column in columns:
            table.add_column(SHORT.get(column, column), justify="left" if column in ("mode", "lora") else "right")
        for row in cells:
            table.add_row(*(row[SHOWN.index(c)] for c in columns))
        console.print(table)
