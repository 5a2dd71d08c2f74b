"""docs/security.md's threat table names the tests that show each attack stopped: they exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_threat_table_names_exists() -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) >= 12
    sources = {p: p.read_text() for p in (ROOT / "tests").rglob("test_*.py")}
    missing = []
    for row in rows:
        current: Path | None = None
        for ref in re.findall(r"`([^`]*test_[^`]*)`", row.split(" | ")[-1]):
            path, _, name = ref.rpartition("::") if "::" in ref else (ref if ref.endswith(".py") else "", "", ref)
            if path:
                current = ROOT / path
                assert current.is_file(), ref
            if not name or name.endswith(".py"):
                continue
            where = [current] if path or (ref.startswith("::") and current) else list(sources)
            if not any(re.search(rf"def {re.escape(name)}\(", sources[w]) for w in where if w in sources):
                missing.append(ref)
    assert missing == []
