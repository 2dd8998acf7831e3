"""The README names no file outside the repository and links the design, which documents every
JSON schema and the exit codes (issue 12 F)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")


def test_readme_names_no_file_outside_the_repository() -> None:
    outside = re.findall(r"\.\./[\w./-]+|/work/[\w./-]+|/root/[\w./-]+", README)
    assert outside == []


def test_readme_links_the_design_and_every_linked_file_exists() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    assert "docs/design.md" in links
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert [link for link in local if not (ROOT / link).exists()] == []


def test_design_documents_every_schema_with_fields_and_the_exit_codes() -> None:
    for schema, field in [("chainwatch.scan/1", "`integrity`"),
                          ("chainwatch.inventory/1", "`paths`"),
                          ("chainwatch.exposure/1", "`hits`"),
                          ("chainwatch.brief/1", "`hypotheses`"),
                          ("chainwatch.alert/1", "`detected_at`")]:
        assert schema in DESIGN
        after = DESIGN.split(schema, 1)[1][:900]
        assert field in after, schema
    for code in ("0 clean", "1 flagged", "2 bad usage", "3 registry"):
        assert code in DESIGN
