"""``scan --format markdown``: a report to paste into an issue or a pull request."""

from __future__ import annotations

from collections.abc import Sequence

from chainwatch.model import Verdict
from chainwatch.output.escape import markdown as md


def render(verdicts: Sequence[Verdict]) -> str:
    out: list[str] = []
    for v in verdicts:
        base = f" against {md(v.baseline.version)}" if v.baseline else ""
        out.append(f"## {md(str(v.target))}: **{v.level.value}** (score {v.score}){base}\n")
        out.append(md(v.explanation) + "\n")
        if v.changes:
            c = v.changes
            out.append(f"- files: {len(c.files.added)} added, {len(c.files.changed)} changed, "
                       f"{len(c.files.removed)} removed, {c.files.unchanged} unchanged")
            if c.capabilities_added:
                out.append("- new capabilities: " + ", ".join(md(x) for x in c.capabilities_added))
            if c.dependencies_added:
                out.append("- new dependencies: " + ", ".join(
                    md(f"{k}@{val}") for k, val in c.dependencies_added.items()))
            if c.scripts_added or c.scripts_changed:
                scripts = {**c.scripts_added, **c.scripts_changed}
                out.append("- install scripts added or changed: " + ", ".join(
                    md(f"{k}: {val}") for k, val in scripts.items()))
            out.append("")
        rows = [f for f in (*v.metadata_signals, *v.findings) if f.severity.rank >= 1]
        if rows:
            out.append("| severity | rule | where | evidence |")
            out.append("|---|---|---|---|")
            for f in rows[:50]:
                where = f"{f.file}:{f.line}" if f.file and f.line else (f.file or "registry")
                old = " (already in baseline)" if f.preexisting else ""
                evidence = md(f.message) + old + (f"<br>`{md(f.snippet)}`" if f.snippet else "")
                out.append(f"| {f.severity.value} | {md(f.rule)} | {md(where)} | {evidence} |")
            if len(rows) > 50:
                out.append(f"\n… and {len(rows) - 50} more findings (see --format json).")
        out.append("")
    return "\n".join(out)
