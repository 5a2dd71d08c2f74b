"""Copy deploy/rule_set_activator.py into the `ZipFile: |` block of deploy/pipeline.yaml.

CloudFormation takes a custom resource's Python code inline; the file is the one we test. Run
`python deploy/sync_inline.py` after editing the handler (`--check` only reports a difference,
and exits 1; tests/deploy runs the same comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "rule_set_activator.py"
TEMPLATE = HERE / "pipeline.yaml"
MARKER = "ZipFile: |"


def inline_block(template: str) -> tuple[int, int, int]:
    """(first line, end line, indent) of the ZipFile block, as line indexes into the template."""
    lines = template.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == MARKER]
    if len(starts) != 1:
        raise SystemExit(f"{TEMPLATE.name}: expected one '{MARKER}' line, found {len(starts)}")
    start = starts[0] + 1
    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip()) + 2
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" " * indent)):
        end += 1
    while end > start and not lines[end - 1].strip():  # trailing blank lines belong to the YAML
        end -= 1
    return start, end, indent


def render(template: str, source: str) -> str:
    lines = template.splitlines(keepends=True)
    start, end, indent = inline_block(template)
    block = [(" " * indent + line if line.strip() else "\n") for line in source.splitlines(keepends=True)]
    return "".join(lines[:start] + block + lines[end:])


def main(argv: list[str]) -> int:
    template = TEMPLATE.read_text()
    wanted = render(template, SOURCE.read_text())
    if wanted == template:
        return 0
    if "--check" in argv:
        print(f"{TEMPLATE.name}: the inline handler differs from {SOURCE.name}; run python deploy/sync_inline.py")
        return 1
    TEMPLATE.write_text(wanted)
    print(f"{TEMPLATE.name}: inline handler updated from {SOURCE.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
