"""``scan --format table``: the human-readable default, in colour when on a terminal."""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from chainwatch.model import Level, Severity, Verdict
from chainwatch.output.console import render_console, rendered
from chainwatch.output.escape import one_line
from chainwatch.output.words import noun_for, plural

LEVEL_STYLE = {Level.BENIGN: "green", Level.SUSPICIOUS: "yellow", Level.MALICIOUS: "bold red"}
SEV_STYLE = {Severity.INFO: "dim", Severity.LOW: "cyan", Severity.MEDIUM: "yellow",
             Severity.HIGH: "red", Severity.CRITICAL: "bold red"}


def safe(text: str | None) -> str:
    """Untrusted text for a rich table or line: no markup, no terminal controls, and one line
    (a newline in a name or message could forge a row or a verdict line of its own)."""
    return escape(one_line(text))


def render(verdicts: Sequence[Verdict], color: bool = False, width: int | None = None,
           show_all: bool = False) -> str:
    """The verdicts for a person; ``width`` None (a pipe) never wraps a line."""
    buf = io.StringIO()
    console = render_console(buf, color, width)
    for v in verdicts:
        style = LEVEL_STYLE[v.level]
        if v.baseline is None:
            base = " (no baseline)"
        elif v.baseline.name != v.target.name:  # --against another package: name it
            base = f" vs {safe(str(v.baseline))}"
        else:
            base = f" vs {safe(v.baseline.version)}"
        console.print(f"[bold]{safe(str(v.target))}[/]{base}: [{style}]{v.level.value.upper()}[/] "
                      f"score {v.score}  [dim]{v.elapsed_s:.2f}s[/]")
        console.print(f"  {safe(v.explanation)}")
        if v.changes:
            c = v.changes
            console.print(f"  files: +{len(c.files.added)} ~{len(c.files.changed)} "
                          f"-{len(c.files.removed)} ={c.files.unchanged}"
                          + (f"; new capabilities: {safe(', '.join(c.capabilities_added))}"
                             if c.capabilities_added else ""))
            if c.dependencies_added:
                console.print("  new dependencies: " + safe(", ".join(
                    f"{k}@{val}" for k, val in c.dependencies_added.items())))
            for k, val in {**c.scripts_added, **c.scripts_changed}.items():
                console.print(f"  install script {safe(k)}: {safe(val)}")
        rows = [f for f in (*v.metadata_signals, *v.findings)
                if show_all or (f.severity.rank >= 1 and not f.preexisting)]
        if rows:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            table.add_column("severity")
            table.add_column("rule")
            table.add_column("where", overflow="fold")
            table.add_column("evidence", overflow="fold")
            for f in rows[:25]:
                where = f.where
                evidence = safe(f.message)
                if f.snippet:
                    evidence += f"\n[dim]{safe(f.snippet)}[/]"
                if f.normalized:
                    evidence += f"\n[dim]normalised: {safe(f.normalized)}[/]"
                table.add_row(f"[{SEV_STYLE[f.severity]}]{f.severity.value}[/]", safe(f.rule),
                              safe(where), evidence)
            console.print(table)
            if len(rows) > 25:
                console.print(f"  [dim]… {len(rows) - 25} more (use --format json)[/]")
        hidden = sum(1 for f in v.findings if f.preexisting)
        if hidden and not show_all:
            console.print(f"  [dim]{plural(hidden, 'finding')} for capabilities the baseline "
                          f"already had {noun_for(hidden, 'is', 'are')} not shown[/]")
        console.print()
    return rendered(buf)
