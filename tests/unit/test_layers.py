"""The folders of `worker/` are its layers: a module imports only from its own layer or those below.

    cli, __main__                  the face (may start `sensormail local`)
    local/                         the emulator, the SMTP stand-in, `sensormail local`
    queue/        ops/             the SQS loop | operator commands (neither imports the other)
    pipeline                       the order of the steps for one email
    aws/                           one AWS concern a module
    mail/                          pure: bytes in, values out
    config, errors, telemetry, events   foundations

Imports are read from the source (ast), lazy ones inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[2] / "worker"

# layer -> rank; a module may import a layer of lower rank, or its own layer
RANKS = {
    "foundation": 0, "mail": 1, "aws": 2, "pipeline": 3, "queue": 4, "ops": 4, "local": 5, "face": 6,
}
FOUNDATIONS = {"config", "errors", "telemetry", "events", "__init__"}


def layer_of(module: str) -> str:
    """The layer of a dotted module name under `worker`."""
    parts = module.split(".")[1:] or ["__init__"]
    head = parts[0]
    if head in ("mail", "aws", "queue", "ops", "local", "pipeline"):
        return head
    if head in ("cli", "__main__"):
        return "face"
    if head in FOUNDATIONS:
        return "foundation"
    raise AssertionError(f"worker.{head} belongs to no layer: add it to tests/unit/test_layers.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(WORKER.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every `worker...` module the file imports, `from worker.x import y` counted as worker.x.y when
    worker/x/y.py exists (a module), else as worker.x."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "worker")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "worker":
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                as_path = WORKER.parent.joinpath(*candidate.split("."))
                found.add(candidate if as_path.with_suffix(".py").exists() or as_path.is_dir() else node.module)
    return found


def allowed(importer: str, imported: str) -> bool:
    src, dst = layer_of(importer), layer_of(imported)
    if src == dst or imported == "worker":
        return True
    return RANKS[dst] < RANKS[src]


MODULES = sorted(WORKER.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    assert len(MODULES) > 20
    for path in MODULES:
        layer_of(module_name(path))


def test_no_import_runs_up_a_layer() -> None:
    broken = [
        f"{module_name(path)} ({layer_of(module_name(path))}) imports {imported} ({layer_of(imported)})"
        for path in MODULES
        for imported in sorted(imports_of(path))
        if not allowed(module_name(path), imported)
    ]
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_only_the_face_reaches_local() -> None:
    outside = [
        module_name(p) for p in MODULES
        if layer_of(module_name(p)) not in ("local", "face")
        and any(layer_of(i) == "local" for i in imports_of(p))
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("importer", "imported", "ok"),
    [
        ("worker.mail.reader", "worker.aws.links", False),
        ("worker.aws.links", "worker.queue.consumer", False),
        ("worker.aws.ledger", "worker.pipeline", False),
        ("worker.queue.consumer", "worker.ops.status", False),
        ("worker.ops.status", "worker.queue.deletes", False),
        ("worker.pipeline", "worker.local.run", False),
        ("worker.config", "worker.mail.mime", False),
        ("worker.aws.links", "worker.mail.reader", True),
        ("worker.queue.consumer", "worker.pipeline", True),
        ("worker.cli", "worker.local.run", True),
        ("worker.mail.reader", "worker.config", True),
    ],
)
def test_the_rule_itself(importer: str, imported: str, ok: bool) -> None:
    assert allowed(importer, imported) is ok


def test_the_reader_sees_lazy_and_aliased_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from worker.mail import recipients as r\n    import worker.aws.links\n")
    assert imports_of(sample) == {"worker.mail.recipients", "worker.aws.links"}


@pytest.mark.parametrize("package", ["mail", "aws", "queue", "ops", "local"])
def test_each_layer_says_what_it_holds(package: str) -> None:
    tree = ast.parse((WORKER / package / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and "\n" not in doc.strip(), f"worker/{package}/__init__.py needs a one-line docstring"
    assert all(isinstance(n, ast.Expr) for n in tree.body), f"worker/{package}/__init__.py re-exports"
