"""Ask the Dagster webserver to reload this code location, as its Reload button does.

The sensor needs this when a file older than the first hourly partition lands: the partitions
are built when the code location is imported, so only a new import reaches back to the file's
hour (partitions.py). The webserver's GraphQL mutation `reloadRepositoryLocation` makes the code
server import the code again; the daemon's sensor ticks go to the new import at once (they run in
the code server), and the UI shows the new partitions.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ecom_assets.settings import DagsterSettings

LOCATION_NAME = "ecom"
"""The location name of workspace.yaml and docker/workspace.yaml."""

RELOAD_MUTATION = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on Error { message }
    ... on WorkspaceLocationEntry {
      locationOrLoadError { __typename ... on PythonError { message } }
    }
  }
}
"""


def graphql_url(settings: DagsterSettings) -> str:
    """The webserver of ECOM_DAGSTER_HOST/PORT; a wildcard bind address is reached on loopback."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind address, read here, never bound
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/graphql"


def reload_code_location(url: str, location: str = LOCATION_NAME, timeout_s: float = 120) -> None:
    """Reload ``location`` through the webserver at ``url``; returns once it has loaded.

    Raises OSError when the webserver cannot be reached, RuntimeError with its message when it
    refuses or the new import fails.
    """
    body = json.dumps({"query": RELOAD_MUTATION, "variables": {"name": location}}).encode()
    if not url.startswith(("http://", "https://")):
        raise RuntimeError(f"not an HTTP URL: {url}")
    request = urllib.request.Request(  # noqa: S310 - checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # an OSError too, but with a body worth reading
        raise RuntimeError(f"HTTP {exc.code} from {url}") from exc
    except ValueError as exc:
        raise RuntimeError(f"{url} did not answer with JSON: {exc}") from exc
    if answer.get("errors"):
        raise RuntimeError("; ".join(str(error.get("message")) for error in answer["errors"]))
    result = (answer.get("data") or {}).get("reloadRepositoryLocation") or {}
    kind = result.get("__typename")
    if kind != "WorkspaceLocationEntry":
        raise RuntimeError(f"{kind}: {result.get('message', 'no message')}")
    loaded = result.get("locationOrLoadError") or {}
    if loaded.get("__typename") == "PythonError":
        raise RuntimeError(f"the code location failed to load: {loaded.get('message')}")


@dataclass
class Reload:
    """A reload requested in the background: a sensor tick must not wait for the import (and
    the code server that runs the tick is the one the reload replaces)."""

    url: str
    location: str = LOCATION_NAME
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    def start(self) -> Reload:
        threading.Thread(target=self._run, name="ecom-reload", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            reload_code_location(self.url, self.location)
        except (OSError, RuntimeError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def outcome(self, wait_s: float) -> str:
        """What to log after waiting up to ``wait_s`` (a refused connection answers at once)."""
        if not self.done.wait(wait_s):
            return f"asked the webserver at {self.url} to reload code location {self.location!r}"
        if self.error:
            return (
                f"could not get code location {self.location!r} reloaded through {self.url} "
                f"({self.error}): reload it in the UI (Deployment > Reload) or restart its code "
                "server"
            )
        return f"code location {self.location!r} reloaded through {self.url}"
