"""Decoder sinks: a value the file's own decoder produced that reaches a sensitive call.

The normaliser (analysis/normalize.py) runs small pure decoder functions of the file through
the bounded evaluator of analysis/evaluate.py and notes where each decoded value goes: the
argument of eval/Function/require/import, of child_process or a network call, or the name of
a global's member (``window[d('hctef')]``). This detector reports those places. A value that
is written as a literal anywhere in the file was looked up (a minifier's string table), not
decoded, and is not reported. A call the evaluator could not finish (a regular expression, an
object, a loop past its budget) is reported all the same when the function visibly transforms
strings and its constant arguments' result reaches such a place: the message says "not
decoded".
"""

from __future__ import annotations

from typing import Any

from chainwatch.analysis import normalize
from chainwatch.analysis.detectors import Hit, detector
from chainwatch.model import PackageFile


@detector("decoder_sink")
def decoder_sink(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    view = normalize.normalize(file.data, file.path)
    hits: list[Hit] = []
    for start, end, where, value in view.decoder_sinks:
        if not value.strip() or value.encode("utf-8", "replace") in file.data:
            continue
        shown = value if len(value) <= 60 else value[:57] + "…"
        hits.append(Hit(start, end - start, f"{where} gets {shown!r}, decoded by the file's "
                                            f"own function"))
    for start, end, where, call in view.undecoded_sinks:
        hits.append(Hit(start, end - start, f"{where} gets the output of {call!r}, a string "
                                            f"transform of the file's own (not decoded: the "
                                            f"evaluator could not run it)"))
    return hits
