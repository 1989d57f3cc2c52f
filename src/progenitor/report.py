"""Human-readable renderings of comparisons: a terminal table and a self-contained HTML report."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from progenitor.verdict import Comparison

_COLOURS = {"derived": "#b3261e", "unrelated": "#1e6b2f", "inconclusive": "#8a6d00"}


def fmt_p(p: float | None) -> str:
    """A p-value for people: ``<1e-12`` style for tiny ones, ``-`` for none."""
    if p is None:
        return "-"
    return "<1e-12" if p < 1e-12 else f"{p:.2g}"


def table_rows(results: Sequence[Comparison]) -> list[list[str]]:
    """One row per comparison: target, verdict, probability, p-value, access, deciding genes."""
    return [
        [
            r.target,
            r.verdict,
            f"{r.probability:.3f}",
            fmt_p(r.p_value),
            r.access,
            ", ".join(r.evidence.get("decided_by", [])) or "-",
        ]
        for r in results
    ]


def html_report(results: Sequence[Comparison]) -> str:
    """A standalone HTML page with the verdicts and every gene's evidence."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>progenitor report</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        "table{border-collapse:collapse}pre{background:#f6f6f6;padding:8px;overflow:auto}</style>",
        "<h1>progenitor: provenance report</h1>",
    ]
    for r in results:
        colour = _COLOURS[r.verdict]
        parts.append(
            f"<h2>{html.escape(r.target)}</h2><p>source <code>{html.escape(r.source)}</code>: "
            f"<b style='color:{colour}'>{r.verdict}</b>, probability {r.probability:.3f}, "
            f"p-value {fmt_p(r.p_value)}, access {r.access}. {html.escape(r.evidence.get('reason', ''))}</p>"
        )
        parts.append(
            "<table><tr><th>gene</th><th>similarity</th><th>z</th><th>null mean z (n)</th><th>p-value</th></tr>"
        )
        for name, e in r.evidence.get("genes", {}).items():
            null = f"{e['null_mean_z']} ({e['null_n']})" if "null_mean_z" in e else "-"
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td>{e['similarity']}</td><td>{e['z']}</td>"
                f"<td>{null}</td><td>{fmt_p(e.get('p_value'))}</td></tr>"
            )
        parts.append(
            "</table><details><summary>raw evidence</summary><pre>"
            f"{html.escape(json.dumps(r.evidence, indent=1))}</pre></details>"
        )
    return "\n".join(parts) + "\n"
