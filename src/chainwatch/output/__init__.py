"""Output formats for scan verdicts: one module per format, one registry of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chainwatch.model import Verdict
from chainwatch.output import jsonout, markdown, sarif, table

Renderer = Callable[[Sequence[Verdict]], str]

FORMATS: dict[str, Renderer] = {
    "json": jsonout.render_json,
    "jsonl": jsonout.render_jsonl,
    "sarif": sarif.render,
    "markdown": markdown.render,
    "table": table.render,
}
