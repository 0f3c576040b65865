"""docker-compose.yml runs real `taskgate` commands and keeps its data."""

from __future__ import annotations

import pytest
import yaml

from tests.cli.helpers import REPO_ROOT, cli_environment, run_taskgate

pytestmark = pytest.mark.unit

TASKGATE_SERVICES = ("migrate", "queue-server", "worker")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service(compose):
    assert set(compose["services"]) == {"redis", "postgres", *TASKGATE_SERVICES}


def test_redis_keeps_an_append_only_file(compose):
    command = compose["services"]["redis"]["command"]
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize("name", ["redis", "postgres", "queue-server", "worker"])
def test_long_running_service_has_healthcheck(compose, name):
    assert "test" in compose["services"][name]["healthcheck"]


def test_worker_can_scale(compose):
    worker = compose["services"]["worker"]
    # A fixed container name or host port would make `--scale worker=N` fail.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_server_waits_for_migration(compose):
    depends = compose["services"]["queue-server"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", TASKGATE_SERVICES)
def test_service_command_is_taskgate_command(compose, name, tmp_path):
    command = compose["services"][name]["command"]
    assert isinstance(command, list), f"{name}: write the command as a list"

    first_option = next(
        (index for index, word in enumerate(command) if word.startswith("-")), len(command)
    )
    subcommand = command[:first_option]
    completed = run_taskgate(*subcommand, "--help", environment=cli_environment(tmp_path))

    assert completed.returncode == 0, completed.stderr
    assert "Usage:" in completed.stdout


def test_dockerfile_runs_taskgate():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["taskgate"]' in dockerfile
