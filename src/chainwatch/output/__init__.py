"""Output formats for scan verdicts: one module per format, one registry of them.

The registry is built on first use, so that importing one output module (``output.words``,
``output.console``) does not import every format and rich with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chainwatch.model import Verdict

Renderer = Callable[[Sequence["Verdict"]], str]
FORMATS: dict[str, Renderer]


def __getattr__(name: str) -> object:
    if name != "FORMATS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from chainwatch.output import jsonout, markdown, sarif, table

    formats: dict[str, Renderer] = {
        "json": jsonout.render_json,
        "jsonl": jsonout.render_jsonl,
        "sarif": sarif.render,
        "markdown": markdown.render,
        "table": table.render,
    }
    globals()["FORMATS"] = formats
    return formats
