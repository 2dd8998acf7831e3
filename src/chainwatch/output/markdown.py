"""``scan --format markdown``: a report to paste into an issue or a pull request.

Everything a package controls goes through :func:`md_text` (prose, headings, cells) or
:func:`md_code` (file paths, snippets, scripts): see escape.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from chainwatch.model import Level, Verdict
from chainwatch.output.escape import md_code, md_text
from chainwatch.output.words import noun_for

MAX_ROWS = 50


def render(verdicts: Sequence[Verdict]) -> str:
    out: list[str] = []
    for v in verdicts:
        base = f" against {md_code(v.baseline.version)}" if v.baseline else ""
        out.append(f"## {md_text(str(v.target))}: **{v.level.value}** (score {v.score}){base}\n")
        out.append(md_text(v.explanation) + "\n")
        if v.changes:
            c = v.changes
            out.append(f"- files: {len(c.files.added)} added, {len(c.files.changed)} changed, "
                       f"{len(c.files.removed)} removed, {c.files.unchanged} unchanged")
            if c.capabilities_added:
                out.append("- new capabilities: " + ", ".join(
                    md_text(x) for x in c.capabilities_added))
            if c.dependencies_added:
                out.append("- new dependencies: " + ", ".join(
                    md_code(f"{k}@{val}") for k, val in c.dependencies_added.items()))
            if c.scripts_added or c.scripts_changed:
                scripts = {**c.scripts_added, **c.scripts_changed}
                out.append("- install scripts added or changed: " + ", ".join(
                    f"{md_text(k)}: {md_code(val)}" for k, val in scripts.items()))
            out.append("")
        rows = [f for f in (*v.metadata_signals, *v.findings) if f.severity.rank >= 1]
        if rows:
            out.append("| severity | rule | where | evidence |")
            out.append("|---|---|---|---|")
            for f in rows[:MAX_ROWS]:
                where = md_code(f.where, in_table=True) if f.file else f.where
                old = " (already in baseline)" if f.preexisting else ""
                evidence = md_text(f.message) + old + (
                    f"<br>{md_code(f.snippet, in_table=True)}" if f.snippet else "") + (
                    f"<br>normalised: {md_code(f.normalized, in_table=True)}"
                    if f.normalized else "")
                out.append(f"| {f.severity.value} | {md_text(f.rule)} | {where} | {evidence} |")
            if len(rows) > MAX_ROWS:
                out.append(f"\n… and {len(rows) - MAX_ROWS} more "
                           f"{noun_for(len(rows) - MAX_ROWS, 'finding')} (see --format json).")
        elif v.level is Level.BENIGN:
            out.append("Nothing to report: no finding at low severity or above.")
        out.append("")
    return "\n".join(out)
