"""infra/k8s: well-formed manifests and values that run the commands the scale-out test runs."""

import json
from pathlib import Path

import yaml

from ser_tasks.runtime.devstack import COMMANDS

K8S = Path(__file__).resolve().parents[1] / "infra" / "k8s"


def docs():
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        out[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return out


def containers(doc):
    spec = doc["spec"]
    if doc["kind"] == "DaskCluster":
        return spec["scheduler"]["spec"]["containers"] + spec["worker"]["spec"]["containers"]
    if doc["kind"] == "DaskWorkerGroup":
        return spec["worker"]["spec"]["containers"]
    return spec["template"]["spec"]["containers"]


def test_every_manifest_parses_and_names_its_kind():
    found = docs()
    assert {"dask-cluster.yaml", "mlflow.yaml", "ser-deploy.yaml", "prefect-server-values.yaml",
            "secrets.example.yaml"} <= set(found)
    for name, items in found.items():
        if name.endswith("-values.yaml"):
            continue  # Helm values, not manifests
        for d in items:
            assert d["apiVersion"] and d["kind"] and d["metadata"]["name"], name
            assert d["metadata"].get("namespace") == "ser", name


def test_containers_run_the_tested_commands_from_one_image():
    seen = set()
    for name, items in docs().items():
        for d in items:
            if d.get("kind") not in {"Deployment", "DaskCluster"}:
                continue
            for c in containers(d):
                argv = c.get("command") or c.get("args")
                match = [svc for svc, cmd in COMMANDS.items() if argv[:len(cmd)] == cmd]
                assert match, (name, argv)
                seen.update(match)
                assert c["image"].endswith("ser-pipeline:latest"), (name, c["image"])
    assert {"dask-scheduler", "dask-worker", "mlflow", "ser-deploy"} <= seen


def test_credentials_come_from_the_secret():
    secret = docs()["secrets.example.yaml"][0]
    assert secret["kind"] == "Secret" and "AWS_SECRET_ACCESS_KEY" in secret["stringData"]
    secret_like = {k: v for d in docs()["secrets.example.yaml"] for k, v in d["stringData"].items()
                   if any(w in k for w in ("PASSWORD", "SECRET", "AUTH_STRING")) or k.endswith("_KEY")}
    assert set(secret_like.values()) <= {"change-me", "ser:change-me"}, secret_like  # placeholders only
    for name in ("mlflow.yaml", "ser-deploy.yaml", "dask-cluster.yaml"):
        for d in docs()[name]:
            for c in containers(d) if d["kind"] not in ("Service", "PersistentVolumeClaim") else []:
                if c["name"] != "scheduler":
                    assert {"secretRef": {"name": "ser-credentials"}} in c["envFrom"], (name, c["name"])


def test_a_gpu_worker_group_advertises_the_resource_training_asks_for():
    (group,) = [d for d in docs()["dask-cluster.yaml"] if d["kind"] == "DaskWorkerGroup"]
    assert group["spec"]["cluster"] == "ser-dask"
    (worker,) = containers(group)
    assert worker["args"][:2] == ["dask", "worker"]
    assert worker["args"][worker["args"].index("--resources") + 1] == "GPU=1"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "KERAS_BACKEND", "value": "jax"} in worker["env"]


def test_mlflow_and_prefect_require_credentials_held_in_secrets():
    (mlflow_deploy, claim) = [d for d in docs()["mlflow.yaml"] if d["kind"] in ("Deployment", "PersistentVolumeClaim")]
    (server,) = containers(mlflow_deploy)
    assert server["command"][2:4] == ["--app-name", "basic-auth"]
    assert {"secretRef": {"name": "ser-mlflow-admin"}} in server["envFrom"]
    assert claim["metadata"]["name"] == "mlflow-auth"  # users outlive the pod
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs()["secrets.example.yaml"]}
    assert set(secrets["ser-mlflow-admin"]) == {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"}
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING"} <= set(
        secrets["ser-credentials"])
    for name in ("ser-deploy.yaml", "dask-cluster.yaml"):  # only the MLflow pod holds the admin's secret
        assert "ser-mlflow-admin" not in (K8S / name).read_text()
    values = docs()["prefect-server-values.yaml"][0]
    (auth,) = [e for e in values["server"]["env"] if e["name"] == "PREFECT_SERVER_API_AUTH_STRING"]
    assert auth["valueFrom"]["secretKeyRef"] == {"name": "ser-credentials", "key": "PREFECT_API_AUTH_STRING"}


def test_the_dask_cluster_speaks_tls_with_certificates_from_a_secret():
    import subprocess
    import sys
    import tempfile

    found = docs()
    (tls_env,) = found["dask-tls.yaml"]
    compose = yaml.safe_load((K8S.parents[1] / "docker-compose.yml").read_text())
    assert tls_env["kind"] == "ConfigMap" and tls_env["data"] == compose["x-dask-tls-env"]  # the tested stack's
    with tempfile.TemporaryDirectory() as tmp:  # and the keys the documented script writes
        subprocess.run([sys.executable, str(K8S.parent / "dask-certs.py"), tmp], check=True, capture_output=True)
        written = dict(line.split("=", 1) for line in Path(tmp, "dask-tls.env").read_text().splitlines())
    assert set(written) == set(tls_env["data"])
    cluster, gpu = found["dask-cluster.yaml"]
    pods = [cluster["spec"]["scheduler"]["spec"], cluster["spec"]["worker"]["spec"], gpu["spec"]["worker"]["spec"],
            next(d for d in found["ser-deploy.yaml"] if d["kind"] == "Deployment")["spec"]["template"]["spec"]]
    for pod in pods:
        assert {"name": "dask-tls", "secret": {"secretName": "ser-dask-tls"}} in pod["volumes"]
        (c,) = pod["containers"]
        assert {"configMapRef": {"name": "ser-dask-tls-env"}} in c["envFrom"], c["name"]
        assert {"name": "dask-tls", "mountPath": "/run/dask-tls", "readOnly": True} in c["volumeMounts"], c["name"]
    scheduler, worker, gpu_worker, deploy = (pod["containers"][0] for pod in pods)
    assert scheduler["args"][scheduler["args"].index("--protocol") + 1] == "tls"
    # the operator injects a tcp:// DASK_SCHEDULER_ADDRESS: the workers name the tls:// address themselves
    for c in (worker, gpu_worker):
        assert c["args"][:3] == ["dask", "worker", "tls://ser-dask-scheduler.ser.svc:8786"]
    assert deploy["command"][deploy["command"].index("--dask-address") + 1] == "tls://ser-dask-scheduler.ser.svc:8786"
    values = json.dumps([found["dask-cluster.yaml"], found["ser-deploy.yaml"]])
    assert "tcp://" not in values
    secret_names = {d["metadata"]["name"] for d in found["secrets.example.yaml"]}
    assert "ser-dask-tls" not in secret_names  # certificates are made by infra/dask-certs.py, never committed
