"""The Dockerfile, read as text (no Docker engine here): the image installs what the tests install,
less the test-only extras, from pyproject.toml; it runs as a non-root user; its command is the
exec form `sensormail run`; the final stage has no build tools."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Extras of `make test` the image leaves out: the embedded emulator and SMTP stand-in
# (`sensormail local`), LocalStack through testcontainers, and the test and lint tools.
TEST_ONLY_EXTRAS = {"test", "local", "docker"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for k, args in self.instructions if k == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, in order."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            parts = rest.split()
            found.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        elif not found and keyword == "ARG":
            name, _, value = rest.partition("=")
            args[name] = value
        elif found:
            found[-1].instructions.append((keyword, rest))
    return args, found


@dataclass
class PipInstall:
    targets: list[str]
    files: list[str]  # -c/-r constraint and requirement files
    options: list[str]


def pip_installs(command: str) -> list[PipInstall]:
    """Every `pip install` in a shell command line (RUN arguments, a Makefile recipe)."""
    found = []
    for part in re.split(r"&&|;", command):
        words = shlex.split(part)
        if "pip" not in " ".join(words) or "install" not in words:
            continue
        rest = words[words.index("install") + 1:]
        install = PipInstall([], [], [])
        i = 0
        while i < len(rest):
            word = rest[i]
            if word in ("-e", "--editable"):
                install.targets.append(rest[i + 1])
                i += 2
                continue
            if word in ("-c", "-r", "--constraint", "--requirement"):
                install.files.append(rest[i + 1])
                i += 2
                continue
            if word.startswith("-"):
                install.options.append(word)
            else:
                install.targets.append(word)
            i += 1
        found.append(install)
    return found


def project_install(installs: list[PipInstall]) -> tuple[set[str], list[str], list[str]]:
    """The extras and files of the one install of this project (target `.` or `.[extras]`)."""
    mine = [p for p in installs if any(t == "." or t.startswith(".[") for t in p.targets)]
    assert len(mine) == 1, installs
    [target] = mine[0].targets
    extras = set(re.findall(r"[\w-]+", target[2:-1])) if target.startswith(".[") else set()
    return extras, mine[0].files, mine[0].options


def expand(extras: set[str]) -> set[str]:
    """Extras with the ones they pull in through `sensormail[...]`."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    out, todo = set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in out:
            continue
        out.add(extra)
        for requirement in map(Requirement, optional[extra]):
            if requirement.name == PYPROJECT["project"]["name"]:
                todo.extend(requirement.extras)
    return out


def makefile_install() -> tuple[set[str], list[str]]:
    installs = [p for line in (ROOT / "Makefile").read_text().splitlines() for p in pip_installs(line)]
    extras, files, _ = project_install(installs)
    return expand(extras), files


def image_install() -> tuple[set[str], list[str], list[str]]:
    _, found = stages()
    installs = [p for stage in found for run in stage.all("RUN") for p in pip_installs(run)]
    return project_install(installs)


# ---------------------------------------------------------------- tests

def test_image_installs_what_the_tests_install_less_test_only_extras() -> None:
    tested, tested_files = makefile_install()
    extras, files, _ = image_install()
    assert extras == tested - TEST_ONLY_EXTRAS == set()
    assert files == tested_files  # the same constraints, if `make test` ever pins any


def test_image_installs_nothing_but_the_project() -> None:
    _, found = stages()
    for stage in found:
        for run in stage.all("RUN"):
            for install in pip_installs(run):
                assert all(t == "." or t.startswith(".[") for t in install.targets), run
            assert not re.search(r"\b(apt-get|apt|apk|yum|dnf)\b", run), f"no system packages: {run}"


def test_wheels_only_so_no_compiler() -> None:
    _, _, options = image_install()
    assert "--only-binary=:all:" in options


def test_runtime_imports_are_covered_by_the_dependencies() -> None:
    """Every third-party module the worker imports outside worker/local comes from a distribution
    pyproject.toml's dependencies bring in (directly or through their own requirements)."""
    needed: set[str] = set()
    for path in (ROOT / "worker").rglob("*.py"):
        if "local" in path.relative_to(ROOT / "worker").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                needed |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                needed.add(node.module.split(".")[0])
    third_party = needed - set(sys.stdlib_module_names) - {"worker", "__future__"}
    assert third_party, "expected the worker to import some dependencies"

    closure: set[str] = set()
    todo = [Requirement(r).name for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        name = canonical(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        for requirement in map(Requirement, metadata.requires(name) or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)

    provided = metadata.packages_distributions()
    for module in sorted(third_party):
        distributions = {canonical(d) for d in provided.get(module, [])}
        assert distributions & closure, f"{module} (from {distributions}) is not in pyproject's dependencies"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_sensormail_run_needs_no_extra() -> None:
    """Starting the worker imports nothing from the local/test extras (not installed in the image)."""
    extras_only = ["moto", "aiosmtpd", "testcontainers", "boto3", "docker", "pytest", "hypothesis"]
    code = (
        "import sys, worker.cli, worker.queue.consumer, worker.pipeline\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {extras_only!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_python_base_is_slim_and_supported() -> None:
    args, found = stages()
    assert len(found) >= 2, "multi-stage: build tools stay in the build stage"
    bases = {stage.base for stage in found}
    assert bases == {"python:${PYTHON_VERSION}-slim-bookworm"}  # one interpreter for the venv's links
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert args["PYTHON_VERSION"] + ".0" in requires


def test_final_stage_copies_the_venv_and_builds_nothing() -> None:
    _, found = stages()
    final = found[-1]
    assert final.name is None or final.name != found[0].name
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), "only the built venv comes in"
    for run in final.all("RUN"):
        assert "pip" not in run and "gcc" not in run and "build-essential" not in run


def test_runs_as_a_non_root_user() -> None:
    _, found = stages()
    users = found[-1].all("USER")
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    uid = int(user)
    assert uid >= 1000
    assert any(f"--uid {uid}" in run for run in found[-1].all("RUN"))


def test_command_is_exec_form_sensormail_run() -> None:
    _, found = stages()
    [cmd] = found[-1].all("CMD")
    assert json.loads(cmd) == ["sensormail", "run"]  # exec form: SIGTERM reaches the worker
    assert not found[-1].all("ENTRYPOINT")
    assert PYPROJECT["project"]["scripts"]["sensormail"] == "worker.cli:main"


def test_build_context_holds_only_what_the_build_copies() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!worker/"} <= set(ignore)
    _, found = stages()
    copied = {word.rstrip("/") for c in found[0].all("COPY") for word in c.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "worker"}
