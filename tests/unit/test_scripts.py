"""The quick-start scripts: dependencies are installed only when they changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ensure(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f". {ROOT / 'scripts' / 'venv.sh'} && ensure_venv test"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def _fake_project(tmp_path: Path, *, pip_fails: bool = False) -> Path:
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    pip = bin_dir / "pip"
    status = 1 if pip_fails else 0
    pip.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pip-calls"\nexit {status}\n')
    pip.chmod(0o755)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    return tmp_path


def _pip_calls(project: Path) -> int:
    calls = project / "pip-calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_pip_runs_only_when_pyproject_changed(tmp_path: Path) -> None:
    project = _fake_project(tmp_path)
    assert _ensure(project).returncode == 0
    assert _pip_calls(project) == 1
    second = _ensure(project)
    assert second.returncode == 0
    assert _pip_calls(project) == 1  # nothing changed: no pip, no registry needed
    assert "installing" not in second.stdout
    (project / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert _ensure(project).returncode == 0
    assert _pip_calls(project) == 2


def test_a_failed_install_is_one_clear_line_and_is_tried_again(tmp_path: Path) -> None:
    project = _fake_project(tmp_path, pip_fails=True)
    result = _ensure(project)
    assert result.returncode != 0
    assert "could not install the dependencies" in result.stderr
    _ensure(project)
    assert _pip_calls(project) == 2  # no stamp was written for the failed install
