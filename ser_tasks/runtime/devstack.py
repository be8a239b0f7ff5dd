"""The services of ``docker-compose.yml`` as local processes on 127.0.0.1, without Docker.

An S3-compatible server (moto's standalone server, from ``moto[server]``), ``prefect server
start``, ``dask scheduler`` with ``dask worker`` processes, and ``mlflow server`` with its
artifacts on that S3 server. The integration tests and ``benchmarks/scale_out.py`` start the stack
this way; :data:`COMMANDS` holds the command of each service, and ``docker-compose.yml`` runs the
same commands in containers (a test compares them).

Example::

    with LocalStack(workdir) as stack:
        stack.start_all(dask_workers=2)
        print(stack.env())  # PREFECT_API_URL, MLFLOW_TRACKING_URI, AWS_* for clients
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ser_tasks.runtime import process_env

# The service commands (program and sub-command): docker-compose.yml must use the same.
COMMANDS = {
    "prefect-server": ["prefect", "server", "start"],
    "dask-scheduler": ["dask", "scheduler"],
    "dask-worker": ["dask", "worker"],
    "dask-gpu-worker": ["dask", "worker"],
    "mlflow": ["mlflow", "server"],
    "ser-deploy": ["ser", "deploy"],
}

# Development credentials of the local S3 server (moto accepts any); never real secrets.
DEV_KEY, DEV_SECRET = "ser-dev", "ser-dev-secret"
# Development role and password of the local PostgreSQL server, as docker-compose.yml's POSTGRES_USER
# and POSTGRES_PASSWORD (.env there); never real secrets.
DEV_PG_USER, DEV_PG_PASSWORD = "ser", "ser-dev-postgres"
# The unprivileged system user PostgreSQL runs as when the tests run as root (postgres refuses root).
PG_SYSTEM_USER = "ser-postgres"
# The init SQL of docker-compose.yml's postgres service (its POSTGRES_DB, prefect, is made first).
PG_INIT = Path(__file__).resolve().parents[2] / "infra" / "postgres"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``postgres``), or ``None``.

    ``initdb`` on ``PATH``, else the newest of Debian's ``/usr/lib/postgresql/<version>/bin``
    (``apt-get install postgresql``, as ``.ci/run`` does: Debian's package carries the ``pg_trgm``
    extension that Prefect's server creates; the ``pgserver`` wheel's build does not).
    """
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return debian[-1].parent if debian else None


def _pg_user() -> dict:
    """``subprocess`` keywords that run PostgreSQL's programs as :data:`PG_SYSTEM_USER` under root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        PG_SYSTEM_USER], check=True, capture_output=True)
    return {"user": PG_SYSTEM_USER, "group": pwd.getpwnam(PG_SYSTEM_USER).pw_gid}


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    """The console script ``name`` of this environment (the venv's bin folder first)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status < 500
    except OSError:
        return False


@dataclass
class LocalStack:
    """Start the services as child processes; stop them all on exit (or :meth:`stop`).

    Attributes:
        workdir: logs (``<service>.log``) and state (sqlite databases, Prefect home) go here.
        bucket: the S3 bucket created on the S3 server.
        urls: service name -> URL, filled as services start (``s3``, ``postgres``, ``prefect``, ``dask``,
            ``mlflow``).
        pg_home: the PostgreSQL server's folder (data, socket, password file), removed by :meth:`stop`.
    """

    workdir: Path
    bucket: str = "ser"
    urls: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    pg_home: Path | None = None

    def __enter__(self) -> LocalStack:
        """Make :attr:`workdir` a ``Path`` and create it; returns the stack."""
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        """Stop every started service (:meth:`stop`), whether or not the block raised."""
        self.stop()

    # -- environment -------------------------------------------------------------------------
    def s3_env(self) -> dict[str, str]:
        """AWS variables for a process that reads or writes the bucket (Dask workers, MLflow server)."""
        return {"AWS_ACCESS_KEY_ID": DEV_KEY, "AWS_SECRET_ACCESS_KEY": DEV_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL_S3": self.urls["s3"], "MLFLOW_S3_ENDPOINT_URL": self.urls["s3"]}

    def env(self) -> dict[str, str]:
        """Variables that point a client (``ser``, Python) at every started service."""
        out = dict(self.s3_env()) if "s3" in self.urls else {}
        if "prefect" in self.urls:
            out["PREFECT_API_URL"] = self.urls["prefect"]
        if "mlflow" in self.urls:
            out["MLFLOW_TRACKING_URI"] = self.urls["mlflow"]
        return out

    def _base_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # A PREFECT_API_URL inherited from the caller (a test harness) is not this stack's.
        inherited = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        return {**process_env.DEFAULTS, **inherited, "PYTHONUNBUFFERED": "1", **self.env(), **(extra or {})}

    # -- processes ---------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              ready: Callable[[], bool] | None = None, timeout: float = 120.0,
              run_as: dict | None = None) -> subprocess.Popen:
        """Start ``argv`` as service ``name`` and wait until ``ready()`` is true.

        The process runs in its own process group, its output going to ``<name>.log``; ``run_as``
        (``user`` and ``group`` keywords of :class:`subprocess.Popen`) runs it as another user.

        Raises:
            RuntimeError: the process exited, or was not ready within ``timeout`` seconds; the
                message carries the end of its log.
        """
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([_bin(argv[0]) if not os.path.isabs(argv[0]) else argv[0], *argv[1:]], stdout=log,
                                stderr=subprocess.STDOUT, env=self._base_env(env), cwd=self.workdir,
                                start_new_session=True, **(run_as or {}))
        self.procs[name] = proc
        deadline = time.monotonic() + timeout
        while ready is not None and not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                state = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {timeout:.0f} s"
                raise RuntimeError(f"service {name} {state}:\n{tail}")
            time.sleep(0.5)
        return proc

    def start_s3(self) -> str:
        """Start moto's S3-compatible server, with :attr:`bucket` created; returns its endpoint URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.spawn("s3", ["moto_server", "-H", "127.0.0.1", "-p", str(port)], ready=lambda: _http_ok(url))
        self.urls["s3"] = url
        import boto3

        boto3.client("s3", endpoint_url=url, aws_access_key_id=DEV_KEY, aws_secret_access_key=DEV_SECRET,
                     region_name="us-east-1").create_bucket(Bucket=self.bucket)
        return url

    def start_postgres(self) -> str:
        """A PostgreSQL server on 127.0.0.1 with the compose file's databases; returns its URL.

        ``initdb`` a fresh cluster (role :data:`DEV_PG_USER`, password :data:`DEV_PG_PASSWORD`,
        scram-sha-256 for every connection), ``postgres`` on a free port, then the compose service's
        initialisation: its ``POSTGRES_DB`` (``prefect``) and the SQL of ``infra/postgres/``. Under
        root the server runs as :data:`PG_SYSTEM_USER`, made if missing, its data in a folder of its own.

        Returns:
            ``postgresql://ser:...@127.0.0.1:<port>`` (append ``/<database>``).

        Raises:
            RuntimeError: no PostgreSQL programs (:func:`postgres_bin`), or the server did not start.
        """
        import tempfile

        import psycopg2

        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server programs: apt-get install postgresql")
        run_as = _pg_user()
        home = Path(tempfile.mkdtemp(prefix="ser-postgres-"))  # not under workdir: the server's user must reach it
        self.pg_home = home
        pwfile = home / "pw"
        pwfile.write_text(DEV_PG_PASSWORD + "\n")
        if run_as:
            for path in (home, pwfile):
                shutil.chown(path, PG_SYSTEM_USER, run_as["group"])
        subprocess.run([str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", DEV_PG_USER, "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions"], check=True, capture_output=True,
                       **run_as)
        port = free_port()
        self.spawn("postgres", [str(bin_dir / "postgres"), "-D", str(home / "data"), "-h", "127.0.0.1",
                                "-p", str(port), "-k", str(home)], ready=lambda: _port_open(port), timeout=60,
                   run_as=run_as)
        url = f"postgresql://{DEV_PG_USER}:{DEV_PG_PASSWORD}@127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(f"{url}/postgres")
                break
            except psycopg2.OperationalError:  # accepting connections a moment after the port opens
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True  # CREATE DATABASE runs outside a transaction
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE prefect")
            for sql in sorted(PG_INIT.glob("*.sql")):
                cur.execute(sql.read_text())
        conn.close()
        self.urls["postgres"] = url
        return url

    def start_prefect(self, database_url: str | None = None, auth_string: str | None = None) -> str:
        """``prefect server start`` with its own home; returns the API URL.

        Args:
            database_url: a ``postgresql+asyncpg://`` URL of its database; ``None``: sqlite in its home.
            auth_string: ``user:password`` the server requires of every API request
                (``PREFECT_SERVER_API_AUTH_STRING``; clients send ``PREFECT_API_AUTH_STRING``);
                ``None``: no credentials.
        """
        port = free_port()
        home = self.workdir / "prefect-home"
        api = f"http://127.0.0.1:{port}/api"
        env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_UI_ENABLED": "false"}
        if database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        if auth_string:
            env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        self.spawn("prefect-server",
                   [*COMMANDS["prefect-server"], "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                   env=env, ready=lambda: _http_ok(f"{api}/health"), timeout=180)
        self.urls["prefect"] = api
        return api

    def start_dask(self, workers: int = 2, threads: int = 1, tls_env: dict[str, str] | None = None) -> str:
        """``dask scheduler`` and ``workers`` separate ``dask worker`` processes; returns the address.

        Args:
            workers: worker processes.
            threads: threads per worker.
            tls_env: the TLS configuration ``infra/dask-certs.py`` writes (``dask-tls.env``): the
                scheduler listens on ``tls://`` and every peer must present a certificate of its CA.
                ``None``: plain TCP.
        """
        port = free_port()
        scheme = "tls" if tls_env else "tcp"
        address = f"{scheme}://127.0.0.1:{port}"
        env = dict(tls_env or {})
        self.spawn("dask-scheduler", [*COMMANDS["dask-scheduler"], "--host", "127.0.0.1", "--port", str(port),
                                      "--protocol", scheme, "--no-dashboard"], env=env, ready=lambda: _port_open(port))
        for i in range(workers):
            self.spawn(f"dask-worker-{i}", [*COMMANDS["dask-worker"], address, "--nthreads", str(threads),
                                            "--nworkers", "1", "--no-dashboard", "--name", f"worker-{i}",
                                            "--preload", "ser_tasks.runtime.worker_setup"], env=env)
        from distributed import Client

        with Client(address, timeout=60, security=tls_security(tls_env) if tls_env else None) as client:
            client.wait_for_workers(workers, timeout=120)
        self.urls["dask"] = address
        return address

    def start_mlflow(self, backend_uri: str | None = None, admin_password: str | None = None,
                     auth_database_uri: str | None = None) -> str:
        """``mlflow server`` (artifacts proxied to ``s3://<bucket>/mlflow``); returns its URL.

        Args:
            backend_uri: its backend store (a ``postgresql+psycopg2://`` URL); ``None``: sqlite in
                :attr:`workdir`.
            admin_password: run MLflow's basic-auth app (``--app-name basic-auth``): every request
                needs a user's credentials; the admin user ``admin`` is created with this password
                (``MLFLOW_AUTH_ADMIN_PASSWORD``) on first start. ``None``: no credentials.
            auth_database_uri: the auth app's user store [default: sqlite in :attr:`workdir`].
        """
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        auth_args, env = [], {}
        if admin_password:
            ini = self.workdir / "mlflow-auth.ini"
            users = auth_database_uri or f"sqlite:///{self.workdir / 'mlflow-auth.db'}"
            ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {users}\n"
                           "admin_username = admin\n"
                           "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
            auth_args = ["--app-name", "basic-auth"]
            env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
                   "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
        self.spawn("mlflow", [*COMMANDS["mlflow"], *auth_args, "--host", "127.0.0.1", "--port", str(port),
                              "--backend-store-uri", backend_uri or f"sqlite:///{self.workdir / 'mlflow.db'}",
                              "--artifacts-destination", f"s3://{self.bucket}/mlflow", "--workers", "1"],
                   env=env, ready=lambda: _http_ok(f"{url}/health"), timeout=180)
        self.urls["mlflow"] = url
        return url

    def start_all(self, dask_workers: int = 2) -> dict[str, str]:
        """S3, Prefect, Dask and MLflow, in dependency order; returns :attr:`urls`."""
        self.start_s3()
        self.start_prefect()
        self.start_mlflow()
        self.start_dask(dask_workers)
        return self.urls

    def stop(self) -> None:
        """Stop every started process (SIGTERM to its group, SIGKILL after 10 s)."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if self.pg_home is not None:  # the PostgreSQL data folder lives outside workdir
            shutil.rmtree(self.pg_home, ignore_errors=True)
            self.pg_home = None


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an environment file (``dask-tls.env``, ``.env``) as a mapping."""
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line and
             not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def tls_security(tls_env: dict[str, str]):
    """A client's ``distributed.Security`` from the TLS configuration of ``infra/dask-certs.py``."""
    from distributed import Security

    prefix = "DASK_DISTRIBUTED__COMM__TLS__"
    return Security(tls_ca_file=tls_env[f"{prefix}CA_FILE"], tls_client_cert=tls_env[f"{prefix}CLIENT__CERT"],
                    tls_client_key=tls_env[f"{prefix}CLIENT__KEY"], require_encryption=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
