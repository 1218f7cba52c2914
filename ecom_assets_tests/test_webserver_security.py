"""The Dagster webserver has no login: what any client that reaches its port can do, and the
read-only mode that takes the mutations away (docs/security.md).

The webserver is the stack's own `dagster dev` command and environment, on a throwaway
DAGSTER_HOME with Dagster's default storage, so the test needs neither PostgreSQL nor Spark.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom_assets.settings import load_settings
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import start_group, stop_group, tail, wait_until
from ecom_assets.stack.supervisor import (
    PROJECT_ROOT,
    dagster_dev_command,
    dagster_environment,
    http_ok,
)

SENSOR = {
    "repositoryLocationName": "ecom",
    "repositoryName": "__repository__",
    "sensorName": "input_files_sensor",
}


def stop_sensor(sensor_id: str) -> str:
    return (
        f'mutation {{ stopSensor(id: "{sensor_id}") {{ __typename '
        "... on UnauthorizedError { message } "
        "... on StopSensorMutationResult { instigationState { status } } } }"
    )


def get(url: str, query: str) -> dict:
    """A plain GET, as an <img src> on any web page would send it: no body, no custom header."""
    address = f"{url}/graphql?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(address, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def post_form(url: str, query: str) -> dict:
    """A text/plain POST, as an HTML form on any web page can send it without a preflight."""
    address = f"{url}/graphql?{urllib.parse.urlencode({'query': query})}"
    request = urllib.request.Request(  # noqa: S310 - loopback
        address, data=b"", headers={"Content-Type": "text/plain"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def sensor_state(url: str) -> dict:
    """The sensor's state id and status, read the way the UI reads them (a JSON POST)."""
    query = (
        "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) "
        "{ ... on Sensor { id sensorState { status } } } }"
    )
    body = json.dumps({"query": query, "variables": {"s": SENSOR}}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read())["data"]["sensorOrError"]


@pytest.fixture(params=[False, True], ids=["default", "read_only"])
def webserver(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, bool]]:
    for name, value in isolated_environment(tmp_path).items():
        if name.startswith("ECOM_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("ECOM_DAGSTER_READ_ONLY", str(request.param).lower())
    # never connected to: the throwaway home below keeps Dagster's default storage
    monkeypatch.setenv("ECOM_DAGSTER_DATABASE_URL", "postgresql://ecom@127.0.0.1:1/unused")
    settings = load_settings()
    env = dagster_environment(settings)
    home = tmp_path / "dagster_home"  # Dagster's default storage: no PostgreSQL needed here
    home.mkdir()
    env["DAGSTER_HOME"] = str(home)
    log = tmp_path / "dagster.log"
    process = start_group(dagster_dev_command(settings), log, env=env, cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{settings.dagster.port}"
    try:
        up = wait_until(
            lambda: process.poll() is None and http_ok(url + "/server_info"), 180, interval_s=0.5
        )
        assert up, tail(log)
        assert wait_until(lambda: "sensorState" in sensor_state(url), 60), tail(log)
        yield url, request.param
    finally:
        stop_group(process.pid, timeout_s=20)


def test_a_cross_site_request_mutates_unless_the_ui_is_read_only(
    webserver: tuple[str, bool],
) -> None:
    """The exposure docs/security.md describes, and its control: a GET or a text/plain form
    POST, which any web page can make the browser send, runs a mutation in the default mode;
    read-only mode refuses both, and the sensor keeps running."""
    url, read_only = webserver
    sensor = sensor_state(url)
    assert sensor["sensorState"]["status"] == "RUNNING"
    for send in (get, post_form):
        answer = send(url, stop_sensor(sensor["id"]))["data"]["stopSensor"]
        if read_only:
            assert answer == {"__typename": "UnauthorizedError", "message": "Authorization failed"}
        else:
            assert answer["__typename"] == "StopSensorMutationResult", answer
    assert sensor_state(url)["sensorState"]["status"] == ("RUNNING" if read_only else "STOPPED")
