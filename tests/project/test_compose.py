"""No Docker engine runs here: check the compose file's shape and that every command it runs exists in the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_with_healthchecks_where_they_serve():
    services = _compose()["services"]
    assert {"redis", "postgres", "migrate", "worker", "beat", "flower", "sandbox", "webhooks"} <= set(services)
    for name in ("redis", "postgres", "flower", "sandbox", "webhooks"):
        assert "healthcheck" in services[name], name
    assert "--basic-auth" in " ".join(services["flower"]["command"])


def test_compose_takes_secrets_from_the_environment_only():
    text = (ROOT / "docker-compose.yml").read_text()
    env = _compose()["x-app"]["environment"]
    for key in ("WEBHOOK_TOKEN", "DROPCOWBOY_SECRET", "SKYCORE_API_KEY", "FONEDYNAMICS_AUTH_TOKEN"):
        assert env[key].startswith("${"), key
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD" in text


def test_every_compose_command_runs_in_this_project():
    for name, svc in _compose()["services"].items():
        cmd = svc.get("command")
        if not cmd or svc.get("image", "").startswith(("redis:", "postgres:")):
            continue
        exe, args = cmd[0], cmd[1:]
        if exe == "dispatcher":
            # every subcommand exists: `--help` on it succeeds
            sub = [a for a in args if not a.startswith("-")][:2]
            r = subprocess.run([str(BIN / "dispatcher"), *sub[:1], "--help"], capture_output=True, text=True)
            assert r.returncode == 0, (name, r.stderr)
            assert sub[0] in subprocess.run([str(BIN / "dispatcher"), "--help"], capture_output=True, text=True).stdout
        elif exe == "celery":
            assert args[:2] == ["-A", "workers.app"], name
            r = subprocess.run([str(BIN / "celery"), "-A", "workers.app", args[2], "--help"], capture_output=True, text=True,
                               cwd=ROOT)
            assert r.returncode == 0, (name, r.stderr[-500:])
        else:
            raise AssertionError(f"{name}: unknown command {exe}")


def test_dockerfile_installs_the_project():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install" in text and "COPY dispatcher" in text and "COPY workers" in text
