"""The brief as Markdown, as one self-contained printable HTML page, or as JSON.

Everything from a package (names, messages, snippets, hosts) is untrusted: Markdown escapes it,
the HTML template autoescapes it, and the page loads nothing from elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from chainwatch.output.escape import md_code, md_text, plain
from chainwatch.output.escape import md_text as md
from chainwatch.output.words import plural

_SECTIONS = ("1. Bottom line up front", "2. Competing hypotheses", "3. Key assumptions and red flags",
             "4. Implications and strategic risks", "5. Recommendations and scenario outlook",
             "6. Key accounts and entities", "7. Indicators of compromise", "8. Timeline",
             "9. Thematic tags")


def render_list(rows: list[dict[str, Any]]) -> str:
    """``chainwatch incidents`` as text: one incident per two lines; what is not known is
    said to be unknown, never shown as ``?``."""
    from chainwatch.incidents.ach import HYPOTHESES

    if not rows:
        return ("no incidents: no suspicious or malicious verdict of a registry release is stored "
                "(verdicts of local files, uploads included, join no incident)")
    lines = []
    for r in rows:
        first = r.get("first_published")
        when = f"first published {first}" if first else "publish time unknown"
        hypothesis = HYPOTHESES.get(str(r.get("hypothesis")), "no leading hypothesis")
        lines.append(f"{r['id']}  {r['level']:10} {plural(int(r['size']), 'release'):>12}  "
                     f"{when}  {hypothesis} ({r.get('confidence') or 'confidence unknown'})")
        lines.append(f"    {plain(r.get('title'))}")
    return "\n".join(lines)


def render_json(brief: dict[str, Any]) -> str:
    return json.dumps(brief, indent=2)


def _statement(item: dict[str, Any]) -> str:
    refs = "; ".join(md(r) for r in item.get("refs", []))
    return f"{md(item['text'])}" + (f" <sub>[{refs}]</sub>" if refs else "")


def render_markdown(brief: dict[str, Any]) -> str:
    h = brief["hypotheses"]
    out = [f"# {md(brief['title'])}", "",
           f"Incident {md_code(brief['incident'])} · {md_text(brief['level'])} · generated "
           f"{brief['generated_at']}", "", f"## {_SECTIONS[0]}", "", _statement(brief["bluf"]),
           "", f"## {_SECTIONS[1]}", "",
           "| Evidence | " + " | ".join(r["id"] for r in sorted(h["ranking"],
                                                              key=lambda r: r["id"])) + " |",
           "|---|" + "---|" * len(h["ranking"])]
    for e in h["evidence"]:
        weight = " (strong)" if e["weight"] > 1 else ""
        out.append(f"| {e['id']}: {md(e['text'])}{weight} | " + " | ".join(
            e["ratings"][r] for r in sorted(e["ratings"])) + " |")
    out += ["", "C consistent, I inconsistent, N not applicable. Ranked by weighted "
            "inconsistency (least first):", ""]
    for i, r in enumerate(h["ranking"], 1):
        out.append(f"{i}. **{r['id']} {md(r['title'])}**: inconsistent {r['inconsistent']}, "
                   f"consistent {r['consistent']}")
    out += ["", "Evidence references:", ""]
    out += [f"- {e['id']}: " + "; ".join(md(r) for r in e["refs"]) for e in h["evidence"]]
    out += ["", f"## {_SECTIONS[2]}", "", "**Assumptions**", ""]
    out += [f"- {_statement(x)}" for x in brief["assumptions"]]
    out += ["", "**Red flags and unknowns**", ""]
    out += [f"- {_statement(x)}" for x in brief["red_flags"]]
    out += ["", "**Cognitive-bias check**", ""]
    out += [f"- {_statement(x)}" for x in brief["bias_check"]]
    out += ["", f"## {_SECTIONS[3]}", ""]
    out += [f"- {_statement(x)}" for x in brief["implications"]]
    out += ["", f"## {_SECTIONS[4]}", ""]
    out += [f"- {_statement(x)}" for x in brief["recommendations"]]
    s = brief["scenarios"]
    out += ["", f"- **Best case:** {md(s['best'])}", f"- **Worst case:** {md(s['worst'])}",
            f"- **Most likely:** {md(s['most_likely'])}", "", f"## {_SECTIONS[5]}", "",
            "| Package | Version | Verdict | Publisher | Published |", "|---|---|---|---|---|"]
    for p in brief["entities"]["packages"]:
        out.append(f"| {md(p['package'])} | {md(p['version'])} | {p['level']} | "
                   f"{md(p['publisher'] or 'unknown')} | {md(p['published'] or 'unknown')} |")
    out += ["", f"Accounts: {', '.join(md(a) for a in brief['entities']['accounts']) or 'unknown'}",
            "", f"## {_SECTIONS[6]}", ""]
    for p in brief["indicators"]["packages"]:
        integrity = md_code(p["integrity"]) if p["integrity"] else "integrity unknown"
        out.append(f"- `npm` {md_code(p['package'] + '@' + p['version'])} {integrity}")
    for kind in ("urls", "hosts", "ips", "webhooks", "wallets"):
        values = brief["indicators"].get(kind) or []
        if values:
            shown = ", ".join(md_code(v) for v in values[:50])
            more = f" and {len(values) - 50} more (JSON export)" if len(values) > 50 else ""
            out.append(f"- {kind}: {shown}{more}")
    out += ["", f"## {_SECTIONS[7]}", "", "| Time | Event |", "|---|---|"]
    out += [f"| {md(e['time'])} | {md(e['event'])} |" for e in brief["timeline"]]
    out += ["", f"## {_SECTIONS[8]}", "", " ".join(md_code(t) for t in brief["tags"]), ""]
    return "\n".join(out)


_ENV = Environment(loader=PackageLoader("chainwatch.incidents", "templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                   lstrip_blocks=True)


def render_html(brief: dict[str, Any]) -> str:
    return _ENV.get_template("brief.html.j2").render(b=brief, sections=_SECTIONS)
