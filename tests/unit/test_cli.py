"""`sensormail inspect` in-process: a path it cannot read ends in one line naming it, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.cli import main


def test_inspect_of_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"sensormail: inspect: {tmp_path} is a directory\n")


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="Linux /proc")
def test_inspect_of_a_file_whose_read_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """/proc/self/mem opens (for root too) and its first read fails with EIO: another OSError."""
    assert main(["inspect", "/proc/self/mem"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "sensormail: inspect: /proc/self/mem: Input/output error\n")
