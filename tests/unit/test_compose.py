"""docker-compose.yaml on paper: Debian's docker-compose 1.29 resolves it (`config` needs no
Docker engine) with a test .env, and the resolved services, health checks, start order, volumes,
environment and secrets are what the deployment needs; the image installs the runtime pins."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from offpeak import settings
from offpeak.config import load_project
from support import REPO
from support.celery import REDIS_SERVER, _wait_port
from support.services import free_port

COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKER_COMPOSE = Path("/usr/bin/docker-compose")
# The test .env: a recognisable value for each required variable, so the resolved file shows
# where each secret went.
TEST_ENV = {
    "AIRFLOW_UID": "1234",
    "AIRFLOW_JWT_SECRET": "jwt-secret-from-env",
    "AIRFLOW_FERNET_KEY": "fernet-key-from-env",
    "POSTGRES_PASSWORD": "pg-password-from-env",
    "REDIS_PASSWORD": "redis-password-from-env",
    "AIRFLOW_CONN_WAREHOUSE": "postgresql://airflow:pg-password-from-env@postgres:5432/warehouse",
}
OFFICIAL_SERVICES = {
    "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-worker", "airflow-triggerer", "airflow-init", "flower",
}  # fmt: skip
# Settings whose code default is a path of one machine (the checkout, $AIRFLOW_HOME): in a
# container compose must set them, and to a place every container sees.
MACHINE_BOUND = {"OFFPEAK_CONFIG_DIR", "OFFPEAK_DATA_ROOT"}
# The names of variables that hold a secret as a whole (URLs with a password are checked apart).
SECRET_KEY = re.compile(r"(SECRET|FERNET_KEY|PASSWORD|_AUTH|TOKEN)$")
REQUIRED_REF = re.compile(r"\$\{([A-Z0-9_]+):\?[^}]*\}")
DEFAULTED_REF = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def compose_config(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of the repo's file with ``env`` as its only .env (the shell's
    environment and a developer's own .env stay out)."""
    if not DOCKER_COMPOSE.exists():
        pytest.fail(
            f"{DOCKER_COMPOSE} is missing: `make test` installs Debian's docker-compose "
            "(apt-get install docker-compose), which checks docker-compose.yaml without an engine"
        )
    env_file = tmp / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    return subprocess.run(
        [str(DOCKER_COMPOSE), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp), "ENV_FILE_PATH": str(env_file)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    result = compose_config(tmp_path_factory.mktemp("compose"), TEST_ENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(resolved) -> dict[str, dict]:
    return resolved["services"]


@pytest.fixture(scope="module")
def airflow(services) -> dict[str, dict]:
    """The services that run Airflow itself (the common block): airflow-* and flower."""
    return {n: s for n, s in services.items() if n.startswith("airflow-") or n == "flower"}


@pytest.fixture(scope="module")
def common_env(airflow) -> dict[str, str]:
    """The environment every Airflow service has, key and value."""
    envs = [set(s["environment"].items()) for s in airflow.values()]
    return dict(set.intersection(*envs))


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_text() -> str:
    """docker-compose.yaml without its comment lines."""
    lines = COMPOSE_FILE.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def required_vars() -> list[str]:
    return sorted(set(REQUIRED_REF.findall(compose_text())))


def command(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def health(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode) of a resolved service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        found[target] = (source, mode[0] if mode else "rw")
    return found


def queues_served(service: dict) -> set[str]:
    """The Celery queues a worker service consumes (`default` without --queues)."""
    words = command(service).split()
    if words[:2] != ["celery", "worker"]:
        return set()
    if "--queues" in words:
        return set(words[words.index("--queues") + 1].split(","))
    return {"default"}


def setting_readers() -> dict[str, str]:
    """OFFPEAK_* variable -> the plugins/offpeak/settings.py function that reads it, found in
    the source, so a setting added there is checked here without editing this test."""
    tree = ast.parse((REPO / "plugins/offpeak/settings.py").read_text())
    readers = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_"):
            for node in ast.walk(fn):
                value = node.value if isinstance(node, ast.Constant) else None
                if isinstance(value, str) and re.fullmatch(r"OFFPEAK_[A-Z_]+", value):
                    readers[value] = fn.name
    return readers


def test_docker_compose_config_resolves_the_official_services_plus_the_demo_sites(services):
    ours = {"demo-sites", "airflow-worker-egress", "statsd-exporter"}
    assert set(services) == OFFICIAL_SERVICES | ours
    profiles = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    # Everything else starts with a plain `docker compose up`.
    assert profiles == {"flower": ["flower"], "airflow-worker-egress": ["queues"]}


@pytest.mark.parametrize("missing", required_vars())
def test_a_missing_secret_stops_compose_naming_it(tmp_path, missing):
    env = {key: value for key, value in TEST_ENV.items() if key != missing}
    result = compose_config(tmp_path, env)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_every_long_running_service_has_the_official_health_check(services):
    checks = {name: health(s) for name, s in services.items() if "healthcheck" in s}
    assert checks["postgres"] == "CMD pg_isready -U airflow"
    assert checks["redis"] == "CMD redis-cli ping"
    assert checks["airflow-apiserver"] == "CMD curl --fail http://localhost:8080/api/v2/version"
    assert checks["airflow-scheduler"] == "CMD curl --fail http://localhost:8974/health"
    jobs = {"airflow-dag-processor": "DagProcessorJob", "airflow-triggerer": "TriggererJob"}
    for name, job in jobs.items():
        assert checks[name] == (
            f'CMD-SHELL airflow jobs check --job-type {job} --hostname "$${{HOSTNAME}}"'
        )
    for name in ("airflow-worker", "airflow-worker-egress"):
        assert checks[name] == (
            "CMD-SHELL celery --app airflow.providers.celery.executors.celery_executor.app "
            'inspect ping -d "celery@$${HOSTNAME}"'
        )
        # dumb-init passes SIGTERM to the worker alone, so it shuts down warm.
        assert services[name]["environment"]["DUMB_INIT_SETSID"] == "0"
    assert checks["flower"] == "CMD curl --fail http://localhost:5555/"
    assert checks["statsd-exporter"] == "CMD wget --spider -q http://localhost:9102/metrics"
    # Only the one-shot init has none.
    assert set(services) - set(checks) == {"airflow-init"}
    # The scheduler's check needs its health server.
    scheduler_env = services["airflow-scheduler"]["environment"]
    assert scheduler_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_services_start_in_the_official_order(airflow):
    healthy = {name: {"condition": "service_healthy"} for name in ("postgres", "redis")}
    assert airflow["airflow-init"]["depends_on"] == healthy
    after_init = {**healthy, "airflow-init": {"condition": "service_completed_successfully"}}
    for name, service in airflow.items():
        if name == "airflow-init":
            continue
        expected = dict(after_init)
        if queues_served(service):  # a worker needs the Execution API up
            expected["airflow-apiserver"] = {"condition": "service_healthy"}
        assert service["depends_on"] == expected, name


def test_airflow_init_migrates_then_creates_the_site_pools(airflow):
    init = airflow["airflow-init"]
    script = command(init)
    assert init["user"] == "0:0"  # to give the named volumes to AIRFLOW_UID
    steps = ["airflow db migrate", "python -m offpeak.pools"]
    assert all(step in script for step in steps)
    assert script.index(steps[0]) < script.index(steps[1])
    assert 'chown "1234:0" /opt/airflow/data /opt/airflow/logs /opt/airflow/auth' in script


def test_every_airflow_service_runs_one_image_with_one_environment(services, airflow, common_env):
    build = {"context": str(REPO), "dockerfile": "include/docker/Dockerfile"}
    for name, service in [*airflow.items(), ("demo-sites", services["demo-sites"])]:
        assert service["build"] == build, name
        assert service["image"] == services["airflow-apiserver"]["image"], name
    for name, service in airflow.items():
        extra = set(service["environment"]) - set(common_env)
        assert extra <= {"DUMB_INIT_SETSID"}, name
        assert service["user"] == ("0:0" if name == "airflow-init" else "1234:0"), name


def test_the_executor_is_celery_with_the_redis_broker(services, common_env):
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = urlsplit(common_env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert broker.password == TEST_ENV["REDIS_PASSWORD"]
    assert TEST_ENV["REDIS_PASSWORD"] not in command(services["redis"])  # see the next test
    backend = urlsplit(common_env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert (backend.scheme, backend.hostname) == ("db+postgresql", "postgres")
    api = urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (api.hostname, api.port, api.path) == ("airflow-apiserver", 8080, "/execution/")
    assert services["airflow-apiserver"]["ports"] == [{"published": 8080, "target": 8080}]


def test_redis_takes_its_password_from_a_file_not_its_command_line(services, tmp_path):
    """The redis service's own command, run by a shell here with Debian's redis-server (the
    container's config file and port moved to this test's): the server asks for the password,
    and no process's command line shows it."""
    redis = services["redis"]
    shell, flag, script = redis["command"]
    assert (shell, flag) == ("sh", "-c")
    port = free_port()
    # `config` prints a literal $ as $$ again; compose hands the container a single one.
    here = script.replace("$$", "$").replace("/tmp/redis.conf", str(tmp_path / "redis.conf"))
    here = here.replace("exec redis-server", f"exec {REDIS_SERVER}")
    here += f" --port {port} --bind 127.0.0.1 --save ''"
    env = {"PATH": os.environ["PATH"], **redis["environment"]}
    proc = subprocess.Popen([shell, flag, here], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        _wait_port(port, 30, "redis-server", proc)
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:  # after the exec: redis itself
            shown = f.read().decode()
        assert "redis-server" in shown and TEST_ENV["REDIS_PASSWORD"] not in shown, shown
        assert oct((tmp_path / "redis.conf").stat().st_mode & 0o777) == "0o600"

        def ping(password: str | None) -> str:
            extra = {"REDISCLI_AUTH": password} if password else {}
            done = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                  text=True, env={"PATH": os.environ["PATH"], **extra})  # fmt: skip
            return done.stdout.strip()

        assert ping(None).startswith("NOAUTH")
        assert ping("wrong") != "PONG"
        assert ping(TEST_ENV["REDIS_PASSWORD"]) == "PONG"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_code_is_mounted_read_only_and_dev_tooling_never(services, airflow):
    for name, service in airflow.items():
        found = mounts(service)
        for folder in ("dags", "plugins", "include"):
            assert found[f"/opt/airflow/{folder}"] == (str(REPO / folder), "ro"), name
        assert found["/opt/airflow/data"] == ("airflow-data", "rw"), name
        assert found["/opt/airflow/logs"] == ("airflow-logs", "rw"), name
    # The admin's generated password: the api-server (and init, which gives it to AIRFLOW_UID).
    holders = {n for n, s in services.items() if "/opt/airflow/auth" in mounts(s)}
    assert holders == {"airflow-apiserver", "airflow-init"}
    assert mounts(services["postgres"])["/docker-entrypoint-initdb.d/10-warehouse.sql"] == (
        str(REPO / "include/docker/create-warehouse.sql"),
        "ro",
    )
    sources = [Path(src) for s in services.values() for src, _ in mounts(s).values()]
    dev_tooling = [REPO / "dev", REPO / "tests"]
    assert [s for s in sources if any(s.is_relative_to(d) for d in dev_tooling)] == []


def test_every_airflow_service_sends_its_metrics_to_the_statsd_exporter(services, common_env):
    """Airflow's StatsD client (statsd, pinned in requirements.txt) sends to statsd-exporter on
    UDP 9125 with the prefix the mapping expects, and the exporter reads that mapping, mounted
    read-only from include/docker/statsd (tests/unit/test_statsd_mapping.py checks its rules)."""
    stated = {k: v for k, v in common_env.items() if k.startswith("AIRFLOW__METRICS__")}
    assert stated == {
        "AIRFLOW__METRICS__STATSD_ON": "true",
        "AIRFLOW__METRICS__STATSD_HOST": "statsd-exporter",
        "AIRFLOW__METRICS__STATSD_PORT": "9125",
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    exporter = services["statsd-exporter"]
    assert re.fullmatch(r"prom/statsd-exporter:v\d+\.\d+\.\d+", exporter["image"])
    assert command(exporter) == "--statsd.mapping-config=/etc/statsd/mapping.yml"
    assert mounts(exporter)["/etc/statsd/mapping.yml"] == (
        str(REPO / "include/docker/statsd/mapping.yml"),
        "ro",
    )
    # 9125/udp is the exporter's default StatsD port; 9102 serves /metrics on the network only.
    assert [str(port) for port in exporter["expose"]] == ["9102", "9125/udp"]
    assert "ports" not in exporter
    pins = (REPO / "requirements.txt").read_text().splitlines()
    assert [line for line in pins if line.startswith("statsd==")] == ["statsd==4.0.1"]


def test_the_named_volumes(resolved):
    named = {"postgres-db", "airflow-data", "airflow-logs", "airflow-auth"}
    assert set(resolved["volumes"]) == named


def test_the_data_root_is_one_volume_shared_by_every_worker(airflow, common_env):
    root = urlsplit(common_env["OFFPEAK_DATA_ROOT"])
    assert root.scheme == "file"
    workers = {n: s for n, s in airflow.items() if queues_served(s)}
    assert set(workers) == {"airflow-worker", "airflow-worker-egress"}
    for name, service in workers.items():
        assert mounts(service)[root.path] == ("airflow-data", "rw"), name
        # Crawl work dirs (<root>/tmp) are shared too: each carries its container's hostname,
        # and a crawl cleans only its own host's (offpeak.pipeline.storage.crawl_workdir).
        assert "tmpfs" not in service, name


def test_every_offpeak_setting_is_stated_by_compose(monkeypatch, airflow, common_env):
    """The rule: every ``OFFPEAK_*`` variable that plugins/offpeak/settings.py reads is a key of
    the common environment (a setting added there fails here until compose states it).

    * machine-bound settings (MACHINE_BOUND: the code default is a path in the checkout or in
      $AIRFLOW_HOME of one machine) get a value for the containers: the config dir is the
      read-only mount of include/config, the data root a place every worker shares (checked by
      the data-root test);
    * every other setting is ``${NAME:-default}`` with the default that settings.py documents,
      so the deployment behaves as documented and .env can still change it.
    """
    readers = setting_readers()
    assert {"OFFPEAK_CONFIG_DIR", "OFFPEAK_DATA_ROOT", "OFFPEAK_IGNORE_WINDOWS"} <= set(readers)
    assert sorted(set(readers) - set(common_env)) == []
    raw = raw_compose()["x-airflow-common"]["environment"]
    config_dir = PurePosixPath(common_env["OFFPEAK_CONFIG_DIR"])
    source, mode = mounts(airflow["airflow-worker"])["/opt/airflow/include"]
    assert (Path(source) / config_dir.relative_to("/opt/airflow/include"), mode) == (
        REPO / "include/config",
        "ro",
    )
    for name, reader in sorted(readers.items()):
        if name in MACHINE_BOUND:
            continue
        assert raw[name] == f"${{{name}:-{common_env[name]}}}", name
        monkeypatch.setenv(name, common_env[name])
        stated = getattr(settings, reader)()
        monkeypatch.delenv(name)
        assert stated == getattr(settings, reader)(), name


def test_every_connection_the_config_needs_is_set(monkeypatch, common_env):
    """The warehouse connection (OFFPEAK_WAREHOUSE_CONN_ID as compose sets it) and each site's
    base_url_conn_id are AIRFLOW_CONN_<ID> with a value; the sites' default to the demo sites.
    The alerts webhook is optional: its variable is stated, and may be empty (no alerts)."""
    for name, value in common_env.items():
        if name.startswith("OFFPEAK_"):
            monkeypatch.setenv(name, value)
    project = load_project(REPO / "include/config")
    assert project.errors == {}
    warehouse = f"AIRFLOW_CONN_{settings.warehouse_conn_id().upper()}"
    assert common_env[warehouse] == TEST_ENV["AIRFLOW_CONN_WAREHOUSE"]
    sites = {f"AIRFLOW_CONN_{s.base_url_conn_id.upper()}" for s in project.sites.values()}
    assert len(sites) == 3
    for name in sorted(sites):
        assert urlsplit(common_env[name]).netloc == "demo-sites:8808", name
    assert f"AIRFLOW_CONN_{project.alerts.http_conn_id.upper()}" in common_env


def unserved_queues(services: dict[str, dict], config_dir: Path) -> list[str]:
    """The Celery queues that sites of ``config_dir`` name and no worker service consumes."""
    served = set().union(*(queues_served(s) for s in services.values()))
    queues = {site.queue for site in load_project(config_dir).sites.values() if site.queue}
    return sorted(queues - served)


def test_every_site_queue_has_a_worker(services, tmp_path):
    served = set().union(*(queues_served(s) for s in services.values()))
    assert served == {"default", "egress"}
    assert unserved_queues(services, REPO / "include/config") == []
    # A site routed to a queue that no worker serves would never crawl: this test names it.
    config = tmp_path / "config"
    shutil.copytree(REPO / "include/config", config)
    funds = config / "sites/funds.yaml"
    funds.write_text(funds.read_text() + "queue: crawl_keyed\n")
    assert unserved_queues(services, config) == ["crawl_keyed"]
    funds.write_text(funds.read_text().replace("crawl_keyed", "egress"))
    assert unserved_queues(services, config) == []


def test_no_secret_has_a_value_in_the_file(common_env):
    """A secret is a required ``${VAR:?...}`` reference, without a default, whether it is a
    whole value (JWT secret, Fernet key, passwords) or the password of a URL; no default in the
    file is a secret's or holds a password."""
    raw = raw_compose()
    blocks = [raw["x-airflow-common"], *raw["services"].values()]
    envs = [b["environment"] for b in blocks if isinstance(b.get("environment"), dict)]
    checked = set()
    for env in envs:
        for key, value in env.items():
            if SECRET_KEY.search(key):
                assert REQUIRED_REF.fullmatch(str(value)), f"{key}: {value}"
                checked.add(key)
            url = urlsplit(REQUIRED_REF.sub(r"required-\1", str(value)))
            if url.netloc and url.password is not None:
                assert re.fullmatch(r"required-[A-Z0-9_]+", url.password), f"{key}: {value}"
                checked.add(key)
    assert {
        "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "POSTGRES_PASSWORD",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL", "REDISCLI_AUTH",
    } <= checked  # fmt: skip
    assert common_env["AIRFLOW__API_AUTH__JWT_SECRET"] == TEST_ENV["AIRFLOW_JWT_SECRET"]
    assert common_env["AIRFLOW__CORE__FERNET_KEY"] == TEST_ENV["AIRFLOW_FERNET_KEY"]
    defaults = DEFAULTED_REF.findall(compose_text())
    assert [
        var
        for var, default in defaults
        if SECRET_KEY.search(var) or var in required_vars() or urlsplit(default).password
    ] == []


def test_env_example_lists_each_required_variable_empty(tmp_path):
    """`cp .env.example .env` ships no secret, and compose refuses it until they are filled."""
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and line[0] != "#"]
    example = dict(line.split("=", 1) for line in lines)
    assert {var: example.get(var) for var in required_vars()} == dict.fromkeys(required_vars(), "")
    result = compose_config(tmp_path, example)
    assert result.returncode != 0 and "in .env" in result.stderr
    # Each optional variable of the file is documented there too.
    text = ENV_EXAMPLE.read_text()
    optional = {var for var, _ in DEFAULTED_REF.findall(compose_text())}
    assert sorted(var for var in optional if var not in text) == []


def test_the_image_installs_the_runtime_pins_with_the_celery_provider():
    lines = (REPO / "include/docker/Dockerfile").read_text().splitlines()
    dockerfile = "\n".join(line for line in lines if not line.startswith("#"))
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {"apache-airflow-providers-celery", "redis", "s3fs"} <= set(pins)
    assert pins["apache-airflow-providers-celery"] == "3.26.0"
    assert "apache-airflow-providers-amazon" in pins  # an s3:// data root
    # The base image is the Airflow the pins hold.
    base = re.search(r"^FROM apache/airflow:(\S+?)-python", dockerfile, re.M)
    assert base and base[1] == pins["apache-airflow"]


def test_the_image_carries_the_code_and_config_but_no_dev_tooling():
    """A worker on another machine runs the image alone: the DAG files, the offpeak package and
    the config are in it; the build context (.dockerignore) lets in nothing else."""
    lines = (REPO / "include/docker/Dockerfile").read_text().splitlines()
    copied = {line.split()[-2]: line.split()[-1] for line in lines if line.startswith("COPY")}
    assert copied == {
        "requirements.txt": "/requirements.txt", "dags": "/opt/airflow/dags",
        "plugins": "/opt/airflow/plugins", "include": "/opt/airflow/include",
    }  # fmt: skip
    ignore = [
        line for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert ignore[0] == "*"  # everything out, then only what the COPY lines need back in
    assert {line for line in ignore if line.startswith("!")} == {
        "!requirements.txt",
        "!dags/",
        "!plugins/",
        "!include/",
    }
