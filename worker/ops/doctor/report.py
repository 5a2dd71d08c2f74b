"""What `sensormail doctor` found, and how it is shown: pure, no I/O.

Each check is one `Check`: a status (✓ ok, ✗ fail, ? unknown or skipped), a title, what it saw,
and for ✗ the fix (an exact command or console step). `needed` says whether mail can flow without
it: a needed check that cannot be answered (?) fails the run too; an informational one does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum


class Status(str, Enum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"

    @property
    def mark(self) -> str:
        return {"ok": "✓", "fail": "✗", "unknown": "?"}[self.value]


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    title: str
    saw: str
    fix: str | None = None
    needed: bool = True
    area: str = ""  # SES, DNS, S3/SQS, SNS/CloudWatch, ECS, end to end

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def brief(error: BaseException, limit: int = 160) -> str:
    """The error on one short line (an emulator may answer an unknown API with a whole HTML page)."""
    from worker.errors import describe

    text = " ".join(describe(error).split())
    if "<!doctype html" in text.lower() or "<html" in text.lower():
        text = text.split("<", 1)[0].rstrip(": ") + ": not supported here"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ok(title: str, saw: str, *, needed: bool = True) -> Check:
    return Check(Status.OK, title, saw, None, needed)


def fail(title: str, saw: str, fix: str, *, needed: bool = True) -> Check:
    return Check(Status.FAIL, title, saw, fix, needed)


def unknown(title: str, saw: str, fix: str | None = None, *, needed: bool = False) -> Check:
    return Check(Status.UNKNOWN, title, saw, fix, needed)


def passed(checks: Iterable[Check]) -> bool:
    """True when nothing failed and every needed check could be answered."""
    return all(c.status is Status.OK or (c.status is Status.UNKNOWN and not c.needed) for c in checks)


def exit_code(checks: Iterable[Check]) -> int:
    return 0 if passed(checks) else 1


def lines(checks: Iterable[Check]) -> list[str]:
    """One line per check (its fix indented below it), grouped under their area."""
    out: list[str] = []
    area = None
    for check in checks:
        if check.area != area:
            area = check.area
            if out:
                out.append("")
            out.append(area)
        out.append(f"  {check.status.mark} {check.title}: {check.saw}")
        if check.fix and check.status is not Status.OK:
            out.append(f"      fix: {check.fix}")
    return out


def summary(checks: list[Check]) -> str:
    counts = {s: sum(1 for c in checks if c.status is s) for s in Status}
    verdict = "healthy" if passed(checks) else "needs attention"
    return (f"{verdict}: {counts[Status.OK]} ✓, {counts[Status.FAIL]} ✗, "
            f"{counts[Status.UNKNOWN]} ? (? fails the run only where the check is needed)")


def as_json(checks: list[Check], found: dict[str, object]) -> str:
    """The `--json` document: {"ok", "exit_code", "found": what was discovered, "checks": [...]}."""
    return json.dumps({
        "ok": passed(checks),
        "exit_code": exit_code(checks),
        "found": found,
        "checks": [c.as_dict() for c in checks],
    }, ensure_ascii=False)


def in_area(area: str, checks: Iterable[Check]) -> list[Check]:
    from dataclasses import replace

    return [replace(c, area=area) for c in checks]
