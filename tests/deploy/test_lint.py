"""Every template in deploy/: cfn-lint finds nothing (errors, warnings or informational), it deploys
without an S3 bucket, and each parameter is described in the template and in docs/deploy.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import cfn
from tests.deploy.cfn import DEPLOY, TEMPLATES

ROOT = DEPLOY.parent
# `aws cloudformation deploy` sends a template inline up to this size; past it, it needs an S3 bucket.
INLINE_TEMPLATE_LIMIT = 51_200

# The console script `cfn-lint` calls this; running it through this interpreter finds the
# cfn-lint the tests were installed with, wherever the venv is.
CFN_LINT = "import sys; from cfnlint.runner import main; sys.exit(main())"


def test_there_are_templates() -> None:
    assert {t.name for t in TEMPLATES} >= {"pipeline.yaml", "service.yaml"}


def test_cfn_lint_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CFN_LINT, "--include-checks", "I", "--", *map(str, TEMPLATES)],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_deployable_without_an_s3_bucket(template: Path) -> None:
    assert len(template.read_bytes()) < INLINE_TEMPLATE_LIMIT


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_parameter_is_described_here_and_in_the_deploy_guide(template: Path) -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name, parameter in cfn.load(template.name)["Parameters"].items():
        assert parameter.get("Description"), name
        assert f"`{name}`" in guide, f"docs/deploy.md does not list {template.name}'s {name}"
