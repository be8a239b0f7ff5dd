"""docker-compose.yml (first version): well formed, loopback-only ports, commands this project runs."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_loopback_ports():
    compose = load()
    assert {"minio", "create-bucket", "prefect-server", "dask-scheduler", "dask-worker", "mlflow"} <= set(compose["services"])
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_project_services_run_commands_the_package_installs():
    compose = load()
    for name in ("prefect-server", "dask-scheduler", "dask-worker", "mlflow"):
        svc = compose["services"][name]
        assert svc["build"]["dockerfile"] == "infra/Dockerfile" and (ROOT / "infra/Dockerfile").exists()
        assert svc["command"][0] in {"prefect", "dask", "mlflow"}, name


def test_credentials_come_from_env_file():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${MINIO_ROOT_PASSWORD}" in text and "ser-dev-password" not in text
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "SER_BUCKET"} <= set(example)
