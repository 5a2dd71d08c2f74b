"""The Dockerfile and the lock files, read as text (tests/system/test_container.py builds and runs
the image): the image installs requirements/runtime.txt with hashes, exactly the closure of
pyproject.toml's dependencies at the versions `make setup` installs from requirements/test.txt,
then the package alone; it runs as a non-root user with /tmp a volume it can write; its command is
the exec form `sensormail run`; the final stage has no build tools."""

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
from typing import cast

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

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
        if not re.search(r"\bpip\b.*\binstall\b", part):
            continue
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


def project_install(installs: list[PipInstall]) -> PipInstall:
    """The one install of this project (target `.`, `-e .` or `.[extras]`)."""
    mine = [p for p in installs if any(t == "." or t.startswith(".[") for t in p.targets)]
    assert len(mine) == 1, installs
    return mine[0]


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


def lock_installs(installs: list[PipInstall]) -> list[PipInstall]:
    return [p for p in installs if p.files]


def makefile_installs() -> list[PipInstall]:
    lines = [line for line in (ROOT / "Makefile").read_text().splitlines() if not line.strip().startswith("#")]
    return [p for line in lines for p in pip_installs(line)]


def image_installs() -> list[PipInstall]:
    _, found = stages()
    return [p for stage in found for run in stage.all("RUN") for p in pip_installs(run)]


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: frozenset[str]

    @property
    def version(self) -> str:
        [spec] = self.requirement.specifier
        assert spec.operator == "==", self.requirement
        return spec.version


def lock(name: str) -> dict[str, list[Pin]]:
    """A `uv pip compile --universal --generate-hashes` output: canonical name -> its pins (more
    than one when versions differ by environment marker, e.g. by Python version)."""
    text = re.sub(r"\\\n", " ", (ROOT / "requirements" / name).read_text())
    pins: dict[str, list[Pin]] = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, _, hashes = line.partition(" --hash=")
        requirement = Requirement(spec.strip())
        pin = Pin(requirement, frozenset(re.findall(r"sha256:[0-9a-f]{64}", line)))
        assert not (len(requirement.specifier) == 1 and requirement.marker is None and canonical(
            requirement.name) in pins), f"{name}: {requirement.name} pinned twice"
        pins.setdefault(canonical(requirement.name), []).append(pin)
    assert pins, name
    return pins


# The environments one universal lock serves: CI and the stand-in base (3.11), the production
# image (3.12, 3.13), developers' machines.
ENVIRONMENTS: list[dict[str, str]] = [
    {**cast("dict[str, str]", default_environment()), "python_version": v, "python_full_version": f"{v}.0", "sys_platform": p,
     "platform_system": s, "os_name": o, "platform_machine": m, "implementation_name": "cpython",
     "platform_python_implementation": "CPython", "extra": ""}
    for v in ("3.11", "3.12", "3.13")
    for p, s, o in (("linux", "Linux", "posix"), ("darwin", "Darwin", "posix"), ("win32", "Windows", "nt"))
    for m in ("x86_64", "aarch64")
]


def closure(requirements: list[str]) -> set[str]:
    """Distributions these requirements bring in, with their own requirements (read from the
    installed metadata, i.e. the locked versions), in any of ENVIRONMENTS."""
    found: dict[str, set[str]] = {}  # name -> extras already followed ("" for none)
    todo = [r for r in map(Requirement, requirements)
            if r.marker is None or any(r.marker.evaluate(e) for e in ENVIRONMENTS)]
    while todo:
        requirement = todo.pop()  # its marker holds in some environment
        name = canonical(requirement.name)
        extras = {"", *requirement.extras} - found.get(name, set())
        if not extras:
            continue
        found.setdefault(name, set()).update(extras)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # for another platform only (e.g. colorama): not installed here, read as a leaf
        for sub in map(Requirement, requires):
            if sub.marker is None or any(sub.marker.evaluate({**e, "extra": x})
                                         for e in ENVIRONMENTS for x in sorted(extras)):
                todo.append(sub)
    return set(found)


def project_requirements(extras: set[str]) -> list[str]:
    """pyproject's dependencies plus those of the extras (their `sensormail[...]` expanded)."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    out = list(PYPROJECT["project"]["dependencies"])
    for extra in expand(extras):
        out += [r for r in optional[extra] if Requirement(r).name != PYPROJECT["project"]["name"]]
    return out


# ---------------------------------------------------------------- tests

def test_image_installs_the_runtime_lock_with_hashes_then_the_project_alone() -> None:
    installs = image_installs()
    [locked] = lock_installs(installs)
    assert locked.files == ["requirements/runtime.txt"] and not locked.targets
    assert "--require-hashes" in locked.options
    assert "--only-binary=:all:" in locked.options  # wheels only: no compiler in the image
    project = project_install(installs)
    assert project.targets == ["."] and "--no-deps" in project.options and not project.files


def test_make_setup_installs_the_test_lock_with_hashes_then_the_project_alone() -> None:
    installs = makefile_installs()
    [locked] = lock_installs(installs)
    assert locked.files == ["requirements/test.txt"] and not locked.targets
    assert "--require-hashes" in locked.options
    project = project_install(installs)
    assert project.targets == ["."] and "--no-deps" in project.options and not project.files
    makefile = (ROOT / "Makefile").read_text()
    [stamp] = re.findall(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert {"pyproject.toml", "requirements/test.txt"} <= set(stamp.split())  # a new lock reinstalls
    assert re.search(r"^lock:", makefile, re.MULTILINE), "`make lock` refreshes the lock files"


def test_the_lock_layer_comes_before_the_sources() -> None:
    """A change to worker/ reuses the dependency layer: the lock is copied and installed first."""
    _, found = stages()
    build = found[0].instructions
    copy_lock = next(i for i, (k, a) in enumerate(build) if k == "COPY" and "requirements/runtime.txt" in a)
    install_lock = next(i for i, (k, a) in enumerate(build) if k == "RUN" and "-r requirements/runtime.txt" in a)
    copy_worker = next(i for i, (k, a) in enumerate(build) if k == "COPY" and a.split()[0] == "worker")
    copy_pyproject = next(i for i, (k, a) in enumerate(build) if k == "COPY" and "pyproject.toml" in a)
    assert copy_lock < install_lock < min(copy_worker, copy_pyproject)


def test_runtime_lock_is_exactly_the_runtime_dependencies_closure() -> None:
    runtime = lock("runtime.txt")
    expected = closure(PYPROJECT["project"]["dependencies"])
    assert set(runtime) == expected, (
        f"missing: {sorted(expected - set(runtime))}, extra: {sorted(set(runtime) - expected)}; run `make lock`")


def test_runtime_lock_holds_no_test_only_package() -> None:
    runtime, test = lock("runtime.txt"), lock("test.txt")
    test_only = {canonical(Requirement(r).name) for r in project_requirements(TEST_ONLY_EXTRAS)} - closure(
        PYPROJECT["project"]["dependencies"])
    assert {"moto", "pytest", "testcontainers", "aiosmtpd", "hypothesis", "mypy", "boto3"} <= test_only
    assert not test_only & set(runtime)
    assert test_only <= set(test)


def test_test_lock_is_the_closure_of_everything_make_setup_installs() -> None:
    test = lock("test.txt")
    expected = closure(project_requirements({"test"}))
    assert set(test) == expected, (
        f"missing: {sorted(expected - set(test))}, extra: {sorted(set(test) - expected)}; run `make lock`")


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    runtime, test = lock("runtime.txt"), lock("test.txt")
    for name, pins in runtime.items():
        for pin in pins:
            assert any(t.version == pin.version and t.hashes == pin.hashes for t in test[name]), pin.requirement


def test_locks_pin_every_package_with_hashes_within_pyproject_ranges() -> None:
    for name, extras in (("runtime.txt", set()), ("test.txt", {"test"})):
        pins = lock(name)
        for key, forks in pins.items():
            for pin in forks:
                assert pin.hashes and pin.version, f"{name}: {pin.requirement} without a hash"
        for requirement in map(Requirement, project_requirements(extras)):
            for pin in pins[canonical(requirement.name)]:
                assert requirement.specifier.contains(pin.version, prereleases=True), (
                    f"{name}: {pin.requirement} is outside pyproject's {requirement}; run `make lock`")


def test_the_venv_holds_the_locked_versions() -> None:
    """What these tests read from installed metadata is the locked set (`make setup` installs it)."""
    for key, forks in lock("test.txt").items():
        for pin in forks:
            if pin.requirement.marker is None or pin.requirement.marker.evaluate({"extra": ""}):
                assert canonical_version(metadata.version(key)) == canonical_version(pin.version), (
                    f"{key}: installed {metadata.version(key)}, locked {pin.version}; run `make setup`")


def canonical_version(version: str) -> str:
    return str(Version(version))


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

    runtime = closure(PYPROJECT["project"]["dependencies"])
    provided = metadata.packages_distributions()
    for module in sorted(third_party):
        distributions = {canonical(d) for d in provided.get(module, [])}
        assert distributions & runtime, f"{module} (from {distributions}) is not in pyproject's dependencies"


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


def test_python_base_is_one_build_argument_defaulting_to_a_slim_supported_python() -> None:
    args, found = stages()
    assert len(found) >= 2, "multi-stage: build tools stay in the build stage"
    bases = {stage.base for stage in found}
    assert bases == {"${PYTHON_IMAGE}"}  # one interpreter for the venv's links; CI picks the stand-in
    match = re.fullmatch(r"python:(3\.\d+)-slim-bookworm", args["PYTHON_IMAGE"])
    assert match, args["PYTHON_IMAGE"]
    assert match.group(1) + ".0" in SpecifierSet(PYPROJECT["project"]["requires-python"])


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
    assert {"!requirements/runtime.txt", "!pyproject.toml", "!README.md", "!worker/"} <= set(ignore)
    assert "!requirements/test.txt" not in ignore and "!requirements/" not in ignore
    _, found = stages()
    copied = {word.rstrip("/") for c in found[0].all("COPY") for word in c.split()[:-1]}
    assert copied == {"requirements/runtime.txt", "pyproject.toml", "README.md", "worker"}


def test_tmp_is_a_volume_the_worker_can_write() -> None:
    """Fargate creates a task volume mounted at a path the image declares a VOLUME from the image's
    directory (owner, mode, contents); else empty, root-owned, 0755: the worker could not write
    its health file (config.DEFAULT_HEALTH_FILE) there, and ECS would replace the task forever."""
    from worker.config import DEFAULT_HEALTH_FILE

    _, found = stages()
    final = found[-1]
    volumes = [json.loads(v) if v.startswith("[") else v.split() for v in final.all("VOLUME")]
    assert ["/tmp"] in volumes
    assert Path(DEFAULT_HEALTH_FILE).parent == Path("/tmp")
    uid = final.all("USER")[-1].split(":")[0]
    keywords = [k for k, _ in final.instructions]
    prepare = next(i for i, (k, a) in enumerate(final.instructions)
                   if k == "RUN" and f"chown {uid}:" in a and "/tmp" in a)
    # Changes to a path after its VOLUME line are discarded: the chown must come first.
    assert prepare < keywords.index("VOLUME")
