"""docker-compose.yml is valid and wires what the README promises: two webhook replicas on
PostgreSQL and Redis behind Caddy, healthchecks on /healthz, PostgreSQL's data on a volume.

`docker compose config` (or the older `docker-compose config`) parses and resolves the file
without a Docker daemon; the test is skipped where neither CLI exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_VARS = "BOT_DOMAIN=bot.example.com\nWEBHOOK_SECRET=s3cret_token\nPOSTGRES_PASSWORD=pw1\n"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def _project(tmp_path: Path, env: str) -> Path:
    """The compose file and what it refers to, with a .env made from .env.example."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / "Dockerfile", tmp_path)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text() + env)
    return tmp_path


def _config(command: list[str], project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "config"], cwd=project, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def compose() -> list[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    return command


def _resolved(command: list[str], project: Path) -> dict[str, Any]:
    done = _config(command, project)
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = yaml.safe_load(done.stdout)
    return loaded


def test_compose_file_is_valid_and_wires_two_replicas(compose: list[str], tmp_path: Path) -> None:
    resolved = _resolved(compose, _project(tmp_path, COMPOSE_VARS))
    services, volumes = resolved["services"], resolved["volumes"]
    assert {"bot1", "bot2", "postgres", "redis", "caddy"} <= set(services)
    for name in ("bot1", "bot2"):
        bot = services[name]
        env = bot["environment"]
        assert env["DATABASE_URL"] == "postgresql://bot:pw1@postgres:5432/bot"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["WEBHOOK_URL"] == "https://bot.example.com/telegram/webhook"
        assert env["WEBHOOK_SECRET"] == "s3cret_token"
        assert env["BOT_TOKEN"]  # from .env
        assert "/healthz" in " ".join(bot["healthcheck"]["test"])
        assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "postgres-data" in volumes
    assert any("postgres-data" in str(v) for v in services["postgres"]["volumes"])
    caddy = services["caddy"]
    assert "443" in str(caddy["ports"])
    assert set(caddy["depends_on"]) == {"bot1", "bot2"}
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "bot1:8080 bot2:8080" in caddyfile and "{$BOT_DOMAIN}" in caddyfile


def test_compose_refuses_to_run_without_the_domain(compose: list[str], tmp_path: Path) -> None:
    done = _config(compose, _project(tmp_path, "WEBHOOK_SECRET=s\nPOSTGRES_PASSWORD=p\n"))
    assert done.returncode != 0
    assert "BOT_DOMAIN" in done.stderr
