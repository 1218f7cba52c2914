"""Spark Connect takes only clients that present its token, which no other user can read.

A Connect client runs Python on the server as the stack's user (``mapInArrow``), so a client
without the token, or with a wrong one, is refused; the token file is created 0600 and the token
is on no command line. The runs' resource and the warm-up present the installation's token by
themselves, each in a fresh process without the suite's SPARK_CONNECT_AUTHENTICATE_TOKEN.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.errors.exceptions.connect import SparkConnectGrpcException

from ecom_assets.resources.private_files import PrivateFileError
from ecom_assets.resources.spark import spark_resource
from ecom_assets.resources.spark_session import (
    TOKEN_ENV,
    client_token,
    installation_token,
    session_builder,
    token_file,
)
from ecom_assets.settings import SettingsError, SparkSettings, load_settings
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import free_port, group_members, stop_group
from ecom_assets.stack.spark_connect_server import LocalSparkConnect

pytestmark = pytest.mark.integration


def _count(url: str, token: str | None) -> int:
    """Rows of a three-row plan run by a new session that presents ``token``."""
    session = session_builder(url, token).create()
    try:
        return session.range(3).count()
    finally:
        session.stop()  # and no longer the process's active session, which getOrCreate takes


def test_a_client_without_the_token_is_refused(spark_server, monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV)  # else pyspark presents the suite's token by itself
    with pytest.raises(SparkConnectGrpcException, match="No authentication token provided"):
        _count(spark_server.url, None)


def test_a_client_with_a_wrong_token_is_refused(spark_server) -> None:
    with pytest.raises(SparkConnectGrpcException, match="Invalid authentication token"):
        _count(spark_server.url, spark_server.token + "x")


def test_a_client_with_the_token_runs_its_plan(spark_server, monkeypatch) -> None:
    token = spark_server.token
    monkeypatch.delenv(TOKEN_ENV)  # the token the builder is given, not the variable
    assert _count(spark_server.url, token) == 3


def test_the_token_file_is_created_private_under_any_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spark-connect.token"
    previous = os.umask(0)  # what a careless shell gives: files 0666 unless created otherwise
    try:
        token = installation_token(path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert installation_token(path) == token  # per installation: read again, not replaced
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_token_file_others_could_read_or_a_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spark-connect.token"
    installation_token(path)
    path.chmod(0o640)
    with pytest.raises(PrivateFileError, match="readable by others"):
        installation_token(path)
    link = tmp_path / "link.token"
    path.chmod(0o600)
    link.symlink_to(path)
    with pytest.raises(PrivateFileError, match="cannot open"):
        installation_token(link)


def test_a_remote_token_is_a_setting_never_shown_and_never_in_the_url(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ECOM_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("ECOM_SPARK_REMOTE", "sc://spark.example:15002/;token=in-the-url-9")
    with pytest.raises(SettingsError, match="ECOM_SPARK_TOKEN") as refused:
        load_settings()
    assert "in-the-url-9" not in str(refused.value)

    monkeypatch.setenv("ECOM_SPARK_REMOTE", "sc://spark.example:15002/;use_ssl=true")
    monkeypatch.setenv("ECOM_SPARK_TOKEN", "remote-secret-7")
    spark = load_settings().spark
    assert "remote-secret-7" not in f"{spark!r} {spark} {spark.model_dump_json()}"
    assert client_token(spark, tmp_path) == "remote-secret-7"
    resource = spark_resource(spark, tmp_path)
    assert "remote-secret-7" not in repr(resource.spark_config)
    assert resource._token() == "remote-secret-7"  # read when the session starts


@dataclass(frozen=True)
class Installation:
    """A local server started as `ecom up` starts it: its token in the home's state directory."""

    server: LocalSparkConnect
    home: Path
    pgid: int

    @property
    def token_file(self) -> Path:
        return token_file(self.home / ".ecom")

    def environment(self) -> dict[str, str]:
        """A fresh process of this installation, without the suite's token."""
        env = isolated_environment(self.home)
        env["ECOM_SPARK_CONNECT_PORT"] = str(self.server.port)
        env.pop(TOKEN_ENV, None)
        return env


@pytest.fixture(scope="module")
def installation() -> Iterator[Installation]:
    root = Path(tempfile.mkdtemp(prefix="ecom-spark-auth-"))
    home = root / "home"
    home.mkdir()
    server = LocalSparkConnect(
        root=home / ".ecom" / "spark", port=free_port(), token_file=token_file(home / ".ecom")
    )
    process = server.start()
    try:
        server.wait_ready(process, timeout_s=180)
        yield Installation(server, home, process.pid)
    finally:
        stop_group(process.pid)
        shutil.rmtree(root, ignore_errors=True)


def test_the_server_takes_the_installation_token_which_no_command_line_shows(
    installation: Installation,
) -> None:
    token = installation.token_file.read_text().strip()
    assert stat.S_IMODE(installation.token_file.stat().st_mode) == 0o600
    assert installation.server.token == token
    shown = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                shown.append((entry / "cmdline").read_bytes())
            except OSError:  # gone meanwhile
                continue
    assert len(shown) > 1 and not any(token.encode() in line for line in shown)
    # it travels in the JVM's environment, which only its own user (and root) can read
    environments = [
        (Path("/proc") / str(pid) / "environ") for pid in group_members(installation.pgid)
    ]
    holders = [path for path in environments if token.encode() in path.read_bytes()]
    assert holders and all(path.stat().st_uid == os.getuid() for path in holders)
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o400 for path in holders)
    # the file's token, not the suite's variable, opens it
    assert _count(installation.server.url, token) == 3
    with pytest.raises(SparkConnectGrpcException, match="Invalid authentication token"):
        _count(installation.server.url, os.environ[TOKEN_ENV])


RUN_SESSION = """
from ecom_assets.resources.spark import spark_resource
from ecom_assets.settings import load_settings

settings = load_settings()
resource = spark_resource(settings.spark, settings.paths.state)
assert "{token}" not in repr(resource.spark_config) + resource.token_file
session = resource.spark_session
print(session.range(4).count())
session.client.close()
"""


def test_a_runs_resource_presents_the_installation_token(installation: Installation) -> None:
    """As a run process does: settings from the environment, the resource's lazy session."""
    token = installation.token_file.read_text().strip()
    script = RUN_SESSION.format(token=token)
    result = subprocess.run(
        [sys.executable, "-c", script], env=installation.environment(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["4"]


def test_the_warm_up_presents_the_installation_token(installation: Installation) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ecom_assets.stack.spark_warmup"], env=installation.environment(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip()) > 0  # rows the ingest plan went through


def test_a_local_setting_uses_the_installation_token_and_a_localhost_url(tmp_path: Path) -> None:
    """pyspark presents a token without TLS only to the host named localhost."""
    spark = SparkSettings(connect_port=15999)
    assert spark.connect_url == "sc://localhost:15999"
    token = client_token(spark, tmp_path)
    assert token == installation_token(token_file(tmp_path))
    assert client_token(SparkSettings(mode="classic"), tmp_path) is None
