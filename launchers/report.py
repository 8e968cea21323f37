"""Report over finished runs: one table per benchmark (CSV, markdown, console) and pictures (PNG and one
self-contained HTML page).

    python -m launchers.report DIR... [--out OUTDIR]
    bash eval.sh --report DIR... [--out OUTDIR]

DIR: any folder holding eval dirs (an eval dir, an experiment dir, the out dir) or a sweep dir (its
sweep.json lists the points). Default OUTDIR: DIR/report for the first DIR.
"""
from __future__ import annotations

import argparse
import base64
import html
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from launchers.errors import UserError
from launchers.fsutil import atomic_write_text
from launchers.report_collect import ReportRow, collect
from launchers.report_plots import acceptance_histogram, accuracy_vs_tpf, short_label
from launchers.report_tables import SHOWN, by_benchmark, print_rich, table_cells, to_csv, to_markdown


@dataclass
class ReportFiles:
    out_dir: Path
    tables: list[Path] = field(default_factory=list)
    pictures: list[Path] = field(default_factory=list)
    html: Path | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UserError(message.replace("argument ", "") + " (usage: --report DIR... [--out OUTDIR])")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(prog="report", add_help=False, allow_abbrev=False)
    p.add_argument("dirs", nargs="*")
    p.add_argument("--out", default=None)
    args = p.parse_args(list(argv))
    if not args.dirs:
        raise UserError("--report needs at least one DIR (an eval dir, experiment dir, out dir or sweep dir)")
    return args


def main(argv: Sequence[str] | None = None, prog: str = "report") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        args = parse(argv)
        files = make_report(args.dirs, args.out)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {files.out_dir}:")
    for path in (*files.tables, *files.pictures, files.html):
        print(f"  {path}")
    return 0


def make_report(dirs: Sequence[str], out: str | None = None, echo: bool = True) -> ReportFiles:
    missing = [d for d in dirs if not Path(d).exists()]
    if missing:
        raise UserError(f"--report: no such directory: {missing[0]}")
    rows = collect(dirs)
    if not rows:
        raise UserError(f"--report: no metrics.json under {', '.join(dirs)}; pass eval dirs, experiment dirs, "
                        "the out dir or a sweep dir with finished benchmarks")
    first = Path(dirs[0]) if Path(dirs[0]).is_dir() else Path(dirs[0]).parent   # a sweep.json path
    files = ReportFiles(out_dir=Path(out or first / "report").resolve())
    if echo:
        print_rich(rows)
    _write_tables(rows, files)
    images = _write_pictures(rows, files)
    files.html = files.out_dir / "report.html"
    atomic_write_text(files.html, html_page(rows, images), mode=0o644)
    return files


def _write_tables(rows: list[ReportRow], files: ReportFiles) -> None:
    out = files.out_dir
    _write(out / "report.csv", to_csv(rows), files.tables)
    for bench, group in by_benchmark(rows).items():
        _write(out / f"{_slug(bench)}.csv", to_csv(group), files.tables)
    _write(out / "report.md", to_markdown(rows), files.tables)


def _write(path: Path, text: str, into: list[Path]) -> None:
    atomic_write_text(path, text, mode=0o644)
    into.append(path)


def _write_pictures(rows: list[ReportRow], files: ReportFiles) -> dict[str, list[tuple[str, bytes]]]:
    """PNG files; returns per benchmark the (caption, png) pairs for the HTML page."""
    images: dict[str, list[tuple[str, bytes]]] = {}
    for bench, group in by_benchmark(rows).items():
        shown = images.setdefault(bench, [])
        png = accuracy_vs_tpf(bench, group)
        if png is not None:
            shown.append((f"{bench}: accuracy vs TPF (Pareto front dashed)", png))
            _write_bytes(files.out_dir / f"acc_vs_tpf_{_slug(bench)}.png", png, files.pictures)
        for n, row in enumerate(group):
            hist = acceptance_histogram(row)
            if hist is not None:
                shown.append((f"{bench}: acceptance lengths, {row.experiment}", hist))
                name = f"acceptance_{_slug(bench)}_{n}_{_slug(short_label(row))}.png"
                _write_bytes(files.out_dir / name, hist, files.pictures)
    return images


def _write_bytes(path: Path, data: bytes, into: list[Path]) -> None:
    """Temp file + rename: a reader never sees half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    into.append(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_") or "x"


def html_page(rows: list[ReportRow], images: dict[str, list[tuple[str, bytes]]]) -> str:
    """One file, no external references: tables inline, pictures as base64 data URIs."""
    esc = html.escape
    body = ["<h1>Accuracy vs tokens per forward</h1>"]
    for bench, group in by_benchmark(rows).items():
        head = "".join(f"<th>{esc(c)}</th>" for c in SHOWN)
        cells = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in table_cells(group))
        body += [f"<h2>{esc(bench)}</h2>", f"<table><tr>{head}</tr>{cells}</table>"]
        for caption, png in images.get(bench, []):
            data = base64.b64encode(png).decode("ascii")
            body.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{esc(caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
             "figure{display:inline-block;margin:0.5em}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nld-eval report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


if __name__ == "__main__":
    sys.exit(main())
