#!/usr/bin/env python3
"""Recall on a held-out folder of labelled JS snippets that were never used to tune chainwatch.

Each ``.js``/``.mjs``/``.cjs``/``.ts`` file is wrapped as the ``index.js`` of a minimal package
(name ``heldout-<stem>``, version 0.0.0, no install script) and judged alone, as
``chainwatch scan FILE --against none`` would. A file under a folder named ``benign`` (or ``ok``)
is a negative; every other file is a positive. Files with ``ruleid:`` / ``ok:`` annotations (the
semgrep convention of GuardDog's tests/analyzer/sourcecode) are also cut into one snippet per
annotation (from the annotation to the next one), judged the same way, for a per-snippet figure.
Nothing is executed; the files are read as bytes.

    python bench/heldout.py /work/heldout/guarddog        # prints recall and writes no files
    python bench/heldout.py DIR --json                    # one JSON document on stdout

Keep such folders outside the repository: they are measurement data, not fixtures, and rules
must not be tuned on them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainwatch.model import PackageRef  # noqa: E402
from chainwatch.scan import Loaded, Scanner, scan_snippet_files  # noqa: E402

EXTENSIONS = (".js", ".mjs", ".cjs", ".ts")
NEGATIVE_DIRS = {"benign", "ok", "negative", "negatives"}
ANNOTATION = re.compile(r"^\s*//\s*(ruleid|ok)\s*:\s*([\w.\-]+)\s*$", re.I)
IMPORT = re.compile(r"\brequire\s*\(|^\s*import\b")
MAX_FILE_BYTES = 2_000_000


@dataclass
class Judged:
    name: str
    positive: bool
    level: str
    top_rule: str | None


def judge(scanner: Scanner, name: str, source: bytes) -> tuple[str, str | None]:
    manifest = json.dumps({"name": f"heldout-{re.sub(r'[^a-z0-9-]', '-', name.lower())[:60]}",
                           "version": "0.0.0", "main": "index.js"})
    files = scan_snippet_files({"package.json": manifest, "index.js": source})
    verdict = scanner.analyze(Loaded(PackageRef("heldout", "0.0.0"), files, origin="folder"),
                              None)
    top = verdict.findings[0].rule if verdict.findings else None
    return verdict.level.value, top


def snippets(text: str) -> list[tuple[str, bool]]:
    """(code, positive) from each annotation to the next one; the imports and requires before
    the first annotation are kept in front of every snippet, as the annotated code uses them
    (other leading code is not: it would lend one snippet's evidence to another)."""
    lines = text.splitlines()
    marks = [(i, m.group(1).lower() == "ruleid") for i, line in enumerate(lines)
             if (m := ANNOTATION.match(line))]
    if not marks:
        return []
    head = "\n".join(line for line in lines[:marks[0][0]] if IMPORT.search(line))
    out = []
    for n, (start, positive) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        out.append((head + "\n" + "\n".join(lines[start:end]), positive))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"error: {args.folder}: not a folder")
    scanner = Scanner(None, workers=1)
    files: list[Judged] = []
    cut: list[Judged] = []
    for path in sorted(p for p in args.folder.rglob("*")
                       if p.suffix in EXTENSIONS and p.is_file() and not p.is_symlink()):
        rel = path.relative_to(args.folder)
        data = path.read_bytes()[:MAX_FILE_BYTES]
        positive = not (set(p.lower() for p in rel.parts[:-1]) & NEGATIVE_DIRS)
        level, top = judge(scanner, rel.stem, data)
        files.append(Judged(str(rel), positive, level, top))
        for k, (code, snippet_positive) in enumerate(snippets(data.decode("utf-8", "replace"))):
            level, top = judge(scanner, f"{rel.stem}-{k}", code.encode())
            cut.append(Judged(f"{rel}#{k + 1}", positive and snippet_positive, level, top))
    scanner.close()

    def figures(rows: list[Judged]) -> dict[str, object]:
        pos = [r for r in rows if r.positive]
        neg = [r for r in rows if not r.positive]
        return {
            "positives": len(pos),
            "flagged": sum(r.level != "benign" for r in pos),
            "malicious": sum(r.level == "malicious" for r in pos),
            "negatives": len(neg),
            "negatives_flagged": sum(r.level != "benign" for r in neg),
            "missed": [r.name for r in pos if r.level == "benign"],
            "false_alarms": [r.name for r in neg if r.level != "benign"],
        }

    doc = {"folder": str(args.folder), "files": figures(files), "snippets": figures(cut),
           "rows": [r.__dict__ for r in files + cut]}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for label, key in (("files", "files"), ("annotated snippets", "snippets")):
        f = doc[key]
        assert isinstance(f, dict)
        print(f"{label}: {f['flagged']}/{f['positives']} positives flagged "
              f"({f['malicious']} malicious); {f['negatives_flagged']}/{f['negatives']} "
              "negatives flagged")
        for name in f["missed"]:
            print(f"  missed: {name}")
        for name in f["false_alarms"]:
            print(f"  false alarm: {name}")
    for r in files:
        print(f"  {'+' if r.positive else '-'} {r.level:10} {r.top_rule or '':30} {r.name}")


if __name__ == "__main__":
    main()
