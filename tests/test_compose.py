"""docker-compose.yml: valid against the Compose Specification, loopback-only, secrets from .env,
and every project service running a command the scale-out test runs as a local process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ser_tasks.runtime.devstack import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def load():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_valid_against_the_compose_specification_schema(tmp_path):
    out = _validate(ROOT / "docker-compose.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    broken = load()
    broken["services"]["mlflow"]["healthcheck"]["interval"] = ["10s"]  # must be a string
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert _validate(tmp_path / "broken.yml").returncode != 0  # the validator does bite


def test_the_stack_has_every_service_with_health_checks_and_loopback_ports():
    services = load()["services"]
    assert {"minio", "create-bucket", "postgres", "prefect-server", "ser-deploy", "dask-scheduler", "dask-worker",
            "mlflow"} <= set(services)
    for name in ("minio", "postgres", "prefect-server", "mlflow", "dask-scheduler"):
        assert "test" in services[name]["healthcheck"], name
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert "ports" not in services["dask-worker"]  # scalable: --scale dask-worker=N


def test_databases_and_artifacts():
    services = load()["services"]
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow_cmd = services["mlflow"]["command"]
    # the driver named: SQLAlchemy 2.1 reads postgresql:// as psycopg 3, which the image does not carry
    assert mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://")
    assert mlflow_cmd[mlflow_cmd.index("--artifacts-destination") + 1].startswith("s3://")
    assert "CREATE DATABASE mlflow" in (ROOT / "infra/postgres/10-mlflow.sql").read_text()
    # the local stack runs the same initialisation (a path that moved with its module once pointed nowhere)
    from ser_tasks.runtime.devstack import PG_INIT

    assert PG_INIT.resolve() == (ROOT / "infra" / "postgres").resolve()
    dockerfile = (ROOT / "infra/Dockerfile").read_text()
    assert "ARG SER_EXTRAS=server" in dockerfile and '".[${SER_EXTRAS}]"' in dockerfile


@pytest.mark.parametrize("service", sorted(COMMANDS))
def test_project_services_run_the_commands_the_tests_run(service):
    svc = load()["services"][service]
    assert svc["build"]["dockerfile"] == "infra/Dockerfile"
    command = svc["command"]
    assert command[:len(COMMANDS[service])] == COMMANDS[service]
    # every option the service passes is one that command accepts
    env = {**os.environ, "COLUMNS": "250", "TERM": "dumb", "NO_COLOR": "1"}
    help_text = subprocess.run([str(BIN / command[0]), *COMMANDS[service][1:], "--help"], capture_output=True,
                               text=True, env=env, timeout=120).stdout
    for flag in (t for t in command if t.startswith("--")):
        assert re.search(re.escape(flag) + r"\b", help_text), (
            f"{service}: {flag} not in `{' '.join(COMMANDS[service])} --help`")


def test_credentials_come_from_the_env_file():
    text = (ROOT / "docker-compose.yml").read_text()
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["MINIO_ROOT_PASSWORD"] not in text and example["POSTGRES_PASSWORD"] not in text
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert used <= set(example), used - set(example)


def test_gpu_workers_are_an_opt_in_group_that_advertises_the_training_resource():
    gpu = load()["services"]["dask-gpu-worker"]
    assert gpu["profiles"] == ["gpu"]  # `docker compose up` alone starts no GPU worker
    command = gpu["command"]
    assert command[command.index("--resources") + 1] == "GPU=1"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"]["KERAS_BACKEND"] == "jax" and "gpu" in gpu["build"]["args"]["SER_EXTRAS"]
    assert "--resources" not in load()["services"]["dask-worker"]["command"]  # CPU workers take no training
    assert "SER_EXTRAS" in (ROOT / "infra/Dockerfile").read_text()


def test_no_service_answers_without_credentials():
    """MLflow's basic-auth app, Prefect's API auth string, Dask over TLS; every secret from .env."""
    services = load()["services"]
    assert services["mlflow"]["command"][2:4] == ["--app-name", "basic-auth"]
    mlflow_env = services["mlflow"]["environment"]
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD")
    assert "/etc/mlflow/basic_auth.ini" in mlflow_env["MLFLOW_AUTH_CONFIG_PATH"]
    ini = (ROOT / "infra/mlflow/basic_auth.ini").read_text()
    assert "admin_password" not in ini and "default_permission = READ" in ini
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"].startswith("${PREFECT_AUTH")
    scheduler = services["dask-scheduler"]["command"]
    assert scheduler[scheduler.index("--protocol") + 1] == "tls"
    for name in ("dask-worker", "dask-gpu-worker", "ser-deploy"):
        svc = services[name]
        assert "tls://dask-scheduler:8786" in svc["command"] and "tcp://dask-scheduler:8786" not in svc["command"]
        assert svc["environment"]["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        assert svc["environment"]["PREFECT_API_AUTH_STRING"].startswith("${PREFECT_AUTH_STRING")
        assert svc["environment"]["MLFLOW_TRACKING_PASSWORD"].startswith("${SER_MLFLOW_PASSWORD")
    assert services["ser-deploy"]["depends_on"]["create-mlflow-user"]["condition"] == "service_completed_successfully"
    text = (ROOT / "docker-compose.yml").read_text()
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for key in ("MLFLOW_ADMIN_PASSWORD", "SER_MLFLOW_PASSWORD", "MLFLOW_FLASK_SECRET_KEY", "PREFECT_AUTH_STRING",
                "SER_S3_SECRET_KEY"):
        assert example[key] not in text, key
    # MinIO's root credentials only where MinIO needs them; the pipeline has a user of its own
    root_holders = {name for name, svc in services.items() if "MINIO_ROOT_PASSWORD" in str(svc.get("environment"))}
    assert root_holders == {"minio", "create-bucket"}, root_holders
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"].startswith("${SER_S3_ACCESS_KEY")
    assert "mc admin policy attach local ser-bucket" in services["create-bucket"]["command"][0]
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()  # the certificates are never committed
