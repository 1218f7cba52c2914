"""Static checks of the Docker deployment (docker/): there is no Docker engine on our machines.

Nothing here builds an image or starts a container. The compose file is validated against the
Compose specification's JSON schema (vendored by check-jsonschema), the Dockerfile is parsed and
every file, path, port, module, CLI argument and variable the deployment relies on is checked
against the repository, the settings and the CLIs of the installed packages.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import click
import jsonschema
import pytest
import yaml

from ecom_assets.settings import settings_table
from ecom_assets.stack.postgres_server import INGEST_SETTINGS
from ecom_assets.stack.spark_connect_server import JVM_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
DAGSTER_YAML = DOCKER / "dagster.yaml"
WORKSPACE_YAML = DOCKER / "workspace.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

PROJECT_SERVICES = ["migrate", "spark", "code-server", "webserver", "daemon", "generator"]
DAGSTER_SERVICES = ["code-server", "webserver", "daemon"]
DATA_SERVICES = ["spark", "code-server", "daemon", "generator"]
# inside the container network only; the published ports are checked to be loopback-bound
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
# ECOM_* variables that are not settings of ecom_assets.settings but documented on their own
EXTRA_ECOM_VARIABLES = {"ECOM_DAGSTER_STORAGE_URL"}  # docs/decisions.md, entry 4

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; $$ escapes
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


# ---------------------------------------------------------------------------------- helpers


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _strings(node: Any) -> Iterator[str]:
    """Every string value (and mapping key) in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _references(text: str) -> list[tuple[str, str | None, str | None]]:
    """(name, operator, argument) of each interpolation in text; escaped $$ are skipped."""
    found = []
    for match in _INTERPOLATION.finditer(text):
        if match["escaped"]:
            continue
        found.append((match["braced"] or match["named"], match["op"], match["arg"]))
    return found


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    """What `docker compose --env-file .env` makes of node, .env being a copy of .env.example."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = env.get(name)
        op, arg = match["op"], match["arg"]
        if op == ":-" and not value:
            return arg
        if op == "-" and value is None:
            return arg
        if op in (":?", "?") and not value:
            raise AssertionError(f"required variable {name} is unset: {arg}")
        return value or ""

    if isinstance(node, str):
        return _INTERPOLATION.sub(replace, node)
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    return node


def _resolved_compose() -> dict[str, Any]:
    return _interpolate(_compose(), _env_example())


def _service(name: str) -> dict[str, Any]:
    return _resolved_compose()["services"][name]


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert pending == "", "Dockerfile ends inside a continued line"
    return instructions


def _dockerfile(keyword: str) -> list[str]:
    return [args for key, args in _dockerfile_instructions() if key == keyword]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in _dockerfile("ENV"):
        for item in shlex.split(arguments):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def _copies() -> list[tuple[list[str], str]]:
    """([sources], destination) of each COPY from the build context (not --from stages)."""
    copies = []
    for arguments in _dockerfile("COPY"):
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        assert "--from" not in arguments
        copies.append((words[:-1], words[-1]))
    return copies


def _image_path(source: str) -> str:
    """Where a COPY puts a single file (destination directory or explicit file path)."""
    workdir = PurePosixPath(_dockerfile("WORKDIR")[-1])
    for sources, destination in _copies():
        if source in sources:
            target = PurePosixPath(destination)
            target = target if target.is_absolute() else workdir / target
            if destination.endswith("/") or len(sources) > 1 or destination in (".", "./"):
                target = target / PurePosixPath(source).name
            return str(target)
    raise AssertionError(f"{source} is not copied into the image")


def _container_path_to_repo(path: str) -> Path | None:
    """The repository file a container path comes from, if the Dockerfile copies one there."""
    for sources, _destination in _copies():
        for source in sources:
            if _image_path(source) == path:
                return ROOT / source
    return None


def _click_parse(command: click.Command, name: str, args: list[str]) -> click.Context:
    """Parse a command line with the real click CLI (groups resolved), without running it."""
    ctx = command.make_context(name, list(args))
    if isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        sub_name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and sub_name is not None
        sub_ctx = sub.make_context(sub_name, rest, parent=ctx)
        if isinstance(sub, click.Group):
            rest = [*getattr(sub_ctx, "_protected_args", []), *sub_ctx.args]
            leaf_name, leaf, rest = sub.resolve_command(sub_ctx, rest)
            assert leaf is not None and leaf_name is not None
            return leaf.make_context(leaf_name, rest, parent=sub_ctx)
        return sub_ctx
    return ctx


def _ecom_setting_names() -> set[str]:
    return {row[0] for row in settings_table()}


def _setting_default(name: str) -> str:
    return next(row[1] for row in settings_table() if row[0] == name)


# ---------------------------------------------------------------------------------- compose


def _compose_validator() -> jsonschema.Draft202012Validator:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_compose_file_matches_the_compose_specification() -> None:
    errors = [error.message for error in _compose_validator().iter_errors(_compose())]
    assert errors == []


def test_compose_schema_catches_a_mistake() -> None:
    """Control: the validator is not vacuous, a misspelt service key is rejected."""
    broken = _compose()
    broken["services"]["generator"]["comand"] = ["python", "-m", "generator"]
    messages = [error.message for error in _compose_validator().iter_errors(broken)]
    assert len(messages) == 1
    assert "comand" in messages[0]


def test_services() -> None:
    assert sorted(_compose()["services"]) == sorted(["postgres", *PROJECT_SERVICES])


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_project_services_run_the_project_image(name: str) -> None:
    service = _service(name)
    assert service["image"] == "ecom-platform:local"
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == ROOT
    assert (ROOT / service["build"]["dockerfile"]) == DOCKERFILE


def test_postgres_is_15_on_host_port_5433_with_volume_and_healthcheck() -> None:
    postgres = _service("postgres")
    assert postgres["image"].startswith("postgres:15")
    assert postgres["image"] == "postgres:15-bookworm"
    assert postgres["ports"] == ["127.0.0.1:5433:5432"]
    settings = [f"{name}={value}" for name, value in INGEST_SETTINGS.items()]
    assert postgres["command"] == ["postgres", *(arg for s in settings for arg in ("-c", s))]
    assert postgres["volumes"] == [
        "pgdata:/var/lib/postgresql/data",
        "./postgres-init:/docker-entrypoint-initdb.d:ro",
    ]
    test = postgres["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    assert test[1].startswith("pg_isready -h 127.0.0.1 ")
    # $$ is compose's escape: the container's shell expands the variables, compose does not
    assert "$${POSTGRES_USER}" in _compose()["services"]["postgres"]["healthcheck"]["test"][1]


def test_postgres_init_creates_the_dagster_database() -> None:
    scripts = sorted((DOCKER / "postgres-init").iterdir())
    assert [script.name for script in scripts] == ["01-dagster-database.sql"]
    statements = [
        line.strip() for line in scripts[0].read_text().splitlines() if not line.startswith("--")
    ]
    assert [s for s in statements if s] == ["CREATE DATABASE dagster;"]
    url = _environment(_service("code-server"))["ECOM_DAGSTER_DATABASE_URL"]
    assert url.rsplit("/", 1)[1] == "dagster"


def _published_ports() -> list[tuple[str, Any]]:
    return [
        (name, port)
        for name, service in _compose()["services"].items()
        for port in service.get("ports", [])
    ]


@pytest.mark.parametrize(("service", "port"), _published_ports())
def test_published_ports_are_bound_to_loopback(service: str, port: Any) -> None:
    assert isinstance(port, str), f"{service}: quote port mappings (YAML reads 3000:3000 as int)"
    host_ip, host_port, container_port = port.split(":")
    assert host_ip == "127.0.0.1"
    assert 1024 <= int(host_port) <= 65535
    assert int(container_port) > 0


def test_exactly_postgres_and_the_webserver_are_published() -> None:
    assert _published_ports() == [
        ("postgres", "127.0.0.1:5433:5432"),
        ("webserver", "127.0.0.1:3000:3000"),
    ]


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("migrate", {"postgres": "service_healthy"}),
        (
            "code-server",
            {
                "postgres": "service_healthy",
                "migrate": "service_completed_successfully",
                "spark": "service_healthy",
            },
        ),
        ("webserver", {"postgres": "service_healthy", "code-server": "service_healthy"}),
        ("daemon", {"postgres": "service_healthy", "code-server": "service_healthy"}),
    ],
)
def test_start_order(name: str, needs: dict[str, str]) -> None:
    depends_on = _service(name)["depends_on"]
    assert {key: value["condition"] for key, value in depends_on.items()} == needs


def test_every_service_waited_for_as_healthy_has_a_healthcheck() -> None:
    services = _resolved_compose()["services"]
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("spark", 'socket.create_connection(("127.0.0.1", 15002)'),
        ("webserver", 'urlopen("http://127.0.0.1:3000/server_info"'),
    ],
)
def test_python_healthchecks_probe_the_service_port(name: str, probe: str) -> None:
    test = _service(name)["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert probe in test[3]
    compile(test[3], f"{name}-healthcheck", "exec")  # valid Python


def test_code_server_healthcheck_is_the_dagster_grpc_check() -> None:
    from dagster._cli import cli

    test = _service("code-server")["healthcheck"]["test"]
    assert test[:2] == ["CMD", "dagster"]
    ctx = _click_parse(cli, "dagster", test[2:])
    assert ctx.command.name == "grpc-health-check"
    assert ctx.params["port"] == 4000


def test_one_shot_migrate_service_runs_ecom_migrate() -> None:
    from ecom_assets.cli import HANDLERS, parser

    migrate = _service("migrate")
    assert migrate["restart"] == "no"
    command = _command(migrate)
    assert command == ["ecom", "migrate"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ecom"] == "ecom_assets.cli:main"
    assert parser().parse_args(command[1:]).command == "migrate"
    assert "migrate" in HANDLERS


def test_generator_runs_the_generator_module() -> None:
    command = _command(_service("generator"))
    assert command == ["python", "-m", "generator"]
    assert (ROOT / "generator" / "__main__.py").is_file()


def test_code_server_serves_the_definitions_module() -> None:
    from dagster._cli import cli

    command = _command(_service("code-server"))
    assert command[0] == "dagster"
    ctx = _click_parse(cli, "dagster", command[1:])
    assert ctx.command.name == "start"
    assert ctx.params["host"] == ALL_INTERFACES
    assert ctx.params["port"] == 4000
    assert ctx.params["module_name"] == "ecom_assets.definitions"
    assert ctx.params["location_name"] == "ecom"
    assert (ROOT / "ecom_assets" / "definitions.py").is_file()
    dagster_tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert dagster_tool == {"module_name": "ecom_assets.definitions", "code_location_name": "ecom"}


@pytest.mark.parametrize(
    ("name", "program"), [("webserver", "dagster-webserver"), ("daemon", "dagster-daemon")]
)
def test_webserver_and_daemon_commands_parse_with_the_real_cli(name: str, program: str) -> None:
    """Container paths are mapped to the repository files the Dockerfile copies there, so click's
    own existence check proves the workspace file is in the image."""
    from dagster._daemon.cli import cli as daemon_cli
    from dagster_webserver.cli import cli as webserver_cli

    command = _command(_service(name))
    assert command[0] == program
    args = []
    for arg in command[1:]:
        repo_file = _container_path_to_repo(arg) if arg.startswith("/") else None
        args.append(str(repo_file) if repo_file else arg)
    assert str(WORKSPACE_YAML) in args
    cli = webserver_cli if name == "webserver" else daemon_cli
    ctx = _click_parse(cli, program, args)
    assert ctx.params["workspace"] == (str(WORKSPACE_YAML),)
    if name == "webserver":
        assert (ctx.params["host"], ctx.params["port"]) == (ALL_INTERFACES, 3000)
    else:
        assert ctx.command.name == "run"


def test_spark_runs_the_connect_server_of_the_pyspark_wheel() -> None:
    import pyspark

    command = _command(_service("spark"))
    spark_home = _dockerfile_env()["SPARK_HOME"]
    python = re.fullmatch(r"python:(\d+\.\d+)-slim-bookworm", _dockerfile("FROM")[0])
    assert python is not None
    assert spark_home == f"/opt/venv/lib/python{python[1]}/site-packages/pyspark"
    assert command[0] == f"{spark_home}/sbin/start-connect-server.sh"
    assert command[1] == "--wait"
    # the wheel pinned in pyproject.toml ships the script (checked on the installed copy)
    assert (Path(pyspark.__file__).parent / "sbin" / "start-connect-server.sh").is_file()
    confs = dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "--conf")
    assert confs["spark.connect.grpc.binding.address"] == ALL_INTERFACES
    assert confs["spark.connect.grpc.binding.port"] == "15002"
    assert confs["spark.sql.session.timeZone"] == "UTC"
    assert confs["spark.driver.extraJavaOptions"] == JVM_OPTIONS  # as the local server's
    assert _environment(_service("spark"))["ECOM_SPARK_REMOTE"] == "sc://spark:15002"
    assert _service("spark")["expose"] == ["15002"]


def test_spark_python_workers_use_the_image_python() -> None:
    env = _dockerfile_env()
    assert env["PYSPARK_PYTHON"] == "/opt/venv/bin/python"
    assert env["VIRTUAL_ENV"] == "/opt/venv"
    assert env["PATH"].startswith("/opt/venv/bin:")


def _runtime_commands() -> list[tuple[str, str]]:
    found = []
    for name, service in _resolved_compose()["services"].items():
        for key in ("command", "entrypoint"):
            if key in service:
                found.append((f"{name}.{key}", " ".join(_strings(service[key]))))
        if "healthcheck" in service:
            found.append((f"{name}.healthcheck", " ".join(_strings(service["healthcheck"]))))
    for key in ("CMD", "ENTRYPOINT"):
        found += [(f"Dockerfile {key}", args) for args in _dockerfile(key)]
    return found


@pytest.mark.parametrize(("where", "command"), _runtime_commands())
def test_nothing_downloads_at_container_start(where: str, command: str) -> None:
    for forbidden in ("pip install", "pip3 install", "--packages", "spark.jars", "uv pip", "curl"):
        assert forbidden not in command, f"{where}: {forbidden}"
    assert "apt-get" not in command


def test_data_volume_is_shared_at_the_same_path() -> None:
    data_dir = _environment(_service("generator"))["ECOM_DATA_DIR"]
    assert data_dir == "/opt/ecom/data"
    for name in DATA_SERVICES:
        assert f"ecom-data:{data_dir}" in _service(name)["volumes"], name
    for name in DAGSTER_SERVICES:
        assert "dagster-storage:/opt/dagster/storage" in _service(name)["volumes"], name
    assert sorted(_compose()["volumes"]) == ["dagster-storage", "ecom-data", "pgdata"]


def test_named_volumes_are_declared_and_bind_mounts_exist() -> None:
    compose = _resolved_compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"


def test_env_file_is_the_repository_dotenv_and_optional() -> None:
    for name in PROJECT_SERVICES:
        assert _service(name)["env_file"] == [{"path": "../.env", "required": False}]
    assert (COMPOSE_FILE.parent / "../.env").resolve() == ROOT / ".env"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------------------------- variables


def _compose_references() -> list[tuple[str, str | None, str | None]]:
    return sorted(
        {ref for text in _strings(_compose()) for ref in _references(text)},
        key=lambda ref: (ref[0], ref[1] or "", ref[2] or ""),
    )


@pytest.mark.parametrize(("name", "op", "arg"), _compose_references())
def test_every_interpolated_variable_is_defined_or_defaulted(
    name: str, op: str | None, arg: str | None
) -> None:
    example = _env_example()
    if op in (":-", "-"):
        if name in example:  # the example and the compose default agree
            assert example[name] == arg
        return
    assert example.get(name), f"{name} is required by docker/compose.yaml but not in .env.example"


def test_required_variables() -> None:
    required = {name for name, op, _ in _compose_references() if op in (None, ":?", "?")}
    assert required == {"POSTGRES_PASSWORD"}


def test_env_example_has_only_variables_the_deployment_uses() -> None:
    referenced = {name for name, _, _ in _compose_references()}
    assert sorted(_env_example()) == sorted(referenced)


def test_env_example_holds_no_real_secret() -> None:
    password = _env_example()["POSTGRES_PASSWORD"]
    assert password.startswith("change-me")
    assert password.endswith("example-only")


def _ecom_names_used() -> list[str]:
    names = set()
    for text in _strings(_compose()):
        names |= {name for name, _, _ in _references(text) if name.startswith("ECOM_")}
        names |= set(re.findall(r"\bECOM_[A-Z0-9_]+", text))
    names |= set(re.findall(r"\bECOM_[A-Z0-9_]+", ENV_EXAMPLE.read_text()))
    names |= set(re.findall(r"\bECOM_[A-Z0-9_]+", DAGSTER_YAML.read_text()))
    names |= {name for name in _dockerfile_env() if name.startswith("ECOM_")}
    return sorted(names)


@pytest.mark.parametrize("name", _ecom_names_used())
def test_every_ecom_variable_is_a_setting(name: str) -> None:
    assert name in _ecom_setting_names() | EXTRA_ECOM_VARIABLES


@pytest.mark.parametrize(
    "name", sorted(name for name in _env_example() if name.startswith("ECOM_"))
)
def test_env_example_values_are_the_settings_defaults(name: str) -> None:
    assert _env_example()[name] == _setting_default(name)


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_container_environment_passes_the_settings_validation(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecom_assets.settings import load_settings
    from ecom_assets.stack.local import dagster_storage_url

    env = _environment(_service(name))
    for key in list(os.environ):
        if key.startswith("ECOM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ECOM_ENV_FILE", str(ROOT / "absent.env"))
    settings = load_settings()
    password = _env_example()["POSTGRES_PASSWORD"]
    assert settings.database.database_url == f"postgresql://ecom:{password}@postgres:5432/ecom"
    assert settings.spark.connect_url == "sc://spark:15002"
    assert not settings.spark.managed
    assert str(settings.input_dir) == "/opt/ecom/data/input"
    # the storage URL the containers get is the one the local stack would derive
    assert env["ECOM_DAGSTER_STORAGE_URL"] == dagster_storage_url(settings)
    assert env["ECOM_DAGSTER_STORAGE_URL"].startswith("postgresql+psycopg2://")
    assert env["ECOM_HOME"] == _dockerfile_env()["ECOM_HOME"]
    assert env["DAGSTER_HOME"] == _dockerfile_env()["DAGSTER_HOME"]


# ---------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_image_user_and_entrypoint() -> None:
    assert _dockerfile("FROM") == ["python:3.11-slim-bookworm"]
    assert _dockerfile("USER") == ["ecom"]
    instructions = [key for key, _ in _dockerfile_instructions()]
    assert instructions.index("USER") > max(
        i for i, key in enumerate(instructions) if key in ("RUN", "COPY")
    ), "everything after USER runs as the unprivileged user"
    assert _dockerfile("ENTRYPOINT") == ['["/usr/bin/tini", "-g", "--"]']
    run = " ".join(_dockerfile("RUN"))
    assert "openjdk-17-jre-headless" in run
    assert "tini" in run
    assert "useradd --system --uid 10001" in run


def _copy_sources() -> list[str]:
    return [source for sources, _ in _copies() for source in sources]


@pytest.mark.parametrize("source", _copy_sources())
def test_every_copy_source_exists_and_is_in_the_build_context(source: str) -> None:
    assert (ROOT / source).exists(), source
    patterns = DOCKERIGNORE.read_text().splitlines()
    included = [p[1:] for p in patterns if p.startswith("!")]
    assert source in included or source.split("/", 1)[0] in included, (
        f"{source} is excluded by {DOCKERIGNORE.name}"
    )


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {p[1:] for p in patterns if p.startswith("!")}
    assert included.isdisjoint({".env", ".venv", ".ecom", "data", ".git"})
    assert included == set(_copy_sources())


def test_dagster_files_are_copied_to_dagster_home_and_workspace_path() -> None:
    assert _image_path("docker/dagster.yaml") == _dockerfile_env()["DAGSTER_HOME"] + "/dagster.yaml"
    assert _image_path("docker/workspace.yaml") == "/opt/dagster/workspace.yaml"
    assert _image_path("sql") == "/opt/ecom/sql"


def test_project_is_installed_at_build_time_next_to_sql() -> None:
    """migrations.py finds sql/ two levels above ecom_assets/resources: editable install."""
    from ecom_assets.resources import migrations

    assert migrations.SQL_DIR == ROOT / "sql"
    assert _dockerfile("WORKDIR") == ["/opt/ecom"]
    assert _dockerfile_env()["ECOM_HOME"] == "/opt/ecom"
    runs = _dockerfile("RUN")
    assert any("pip install --no-deps -e ." in run for run in runs)
    install = next(i for i, run in enumerate(runs) if "pip install --no-deps -e ." in run)
    checks = next(i for i, run in enumerate(runs) if "discover_migrations" in run)
    assert install < checks


# ---------------------------------------------------------------------------------- dagster


def _dagster_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = _environment(_service("daemon"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_dagster_yaml_postgres_storage_ingest_limit_and_daemons() -> None:
    from ecom_assets.stack.dagster_home import (
        INGEST_CONCURRENCY_TAG,
        STORAGE_URL_ENV,
        UNUSED_DAEMONS_OFF,
    )

    config = yaml.safe_load(DAGSTER_YAML.read_text())
    assert {key: config[key] for key in UNUSED_DAEMONS_OFF} == UNUSED_DAEMONS_OFF
    assert config["storage"] == {"postgres": {"postgres_url": {"env": STORAGE_URL_ENV}}}
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    assert coordinator["config"]["tag_concurrency_limits"] == [
        {"key": INGEST_CONCURRENCY_TAG, "limit": 1}
    ]
    assert INGEST_CONCURRENCY_TAG == "ecom/ingest"
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"


def test_dagster_yaml_passes_dagsters_instance_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import DagsterPostgresStorage

    env = _dagster_env(monkeypatch)
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    coordinator = process_config(
        QueuedRunCoordinator.config_type(), config["run_coordinator"]["config"]
    )
    assert coordinator.success, coordinator.errors
    assert coordinator.value["max_concurrent_runs"] == 4
    assert coordinator.value["dequeue_interval_seconds"] == 1
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    assert storage.value["postgres_url"] == env["ECOM_DAGSTER_STORAGE_URL"]


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_dagster_services_have_every_variable_dagster_yaml_reads(name: str) -> None:
    wanted = set(re.findall(r"env: (\w+)", DAGSTER_YAML.read_text()))
    assert wanted == {
        "ECOM_DAGSTER_STORAGE_URL",
        "ECOM_DAGSTER_MAX_CONCURRENT_RUNS",
        "ECOM_DAGSTER_DEQUEUE_INTERVAL_S",
    }
    assert wanted <= set(_environment(_service(name)))


def test_dagster_yaml_directories_are_the_shared_volume() -> None:
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    assert config["local_artifact_storage"]["config"]["base_dir"] == "/opt/dagster/storage"
    assert config["compute_logs"]["config"]["base_dir"].startswith("/opt/dagster/storage/")


def test_workspace_points_at_the_code_server() -> None:
    from dagster._core.workspace.config_schema import ensure_workspace_config

    workspace = yaml.safe_load(WORKSPACE_YAML.read_text())
    ensure_workspace_config(workspace, str(WORKSPACE_YAML))
    assert workspace == {
        "load_from": [
            {"grpc_server": {"host": "code-server", "port": 4000, "location_name": "ecom"}}
        ]
    }
    assert "code-server" in _compose()["services"]
    assert _service("code-server")["expose"] == ["4000"]
