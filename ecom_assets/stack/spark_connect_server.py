"""The local Spark Connect server: one long-lived JVM that every run's session connects to.

Measured on our machines: a fresh SparkSession costs about 7 s per run, a Connect client 0.5 s
(docs/decisions.md). pyspark's wheel ships the server jar and ``sbin/start-connect-server.sh``,
so nothing is downloaded. The server's Python workers need the project's interpreter (Arrow,
psycopg); only the PYSPARK_PYTHON environment variable reliably gives it to them.

The server runs any Python a client sends as the stack's user, so it takes only clients that
present its token (resources/spark_session.py). The token reaches the JVM in its environment
(SPARK_CONNECT_AUTHENTICATE_TOKEN, as pyspark's own local server does): a command line is
readable by every local user in /proc, an environment only by the process's own user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ecom_assets.resources.spark_session import TOKEN_ENV, installation_token
from ecom_assets.stack.processes import port_open, start_group, tail, wait_until


class SparkServerError(RuntimeError):
    """Java or the server is missing, or the server did not come up; the message says why."""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def check_java() -> str:
    """The `java -version` banner; a clear error when Java 17+ is missing."""
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if "JAVA_HOME" in os.environ else None
    executable = str(java) if java and java.exists() else shutil.which("java")
    if executable is None:
        raise SparkServerError(
            "Java 17 or newer is required for Spark: install it (Debian: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    banner = subprocess.run([executable, "-version"], capture_output=True, text=True).stderr
    first = banner.splitlines()[0] if banner else "unknown"
    version = first.split('"')[1] if '"' in first else "0"
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 17:
        raise SparkServerError(f"Spark 4 needs Java 17 or newer, found: {first}")
    return first


JVM_OPTIONS = "-XX:+UseParallelGC"
"""The server's JVM flags. The parallel collector instead of G1: G1's own structures (remembered
sets, marking bitmaps) cost about 240 MB of the stack's memory under a backlog, for no
throughput on 2 cores, where collections took 2.8 s of a 117 s ingest (docs/decisions.md 36)."""


@dataclass(frozen=True)
class LocalSparkConnect:
    """A Spark Connect server bound to 127.0.0.1:port, its logs and scratch under ``root``,
    serving the clients that present the token of ``token_file``.

    Without a ``token_file`` (the test suite, scripts) the token is the starting process's
    SPARK_CONNECT_AUTHENTICATE_TOKEN, which its own clients present too, or else a new one in
    ``root``.
    """

    root: Path
    port: int
    master: str = "local[2]"
    driver_memory: str = "1g"
    shuffle_partitions: int = 4
    token_file: Path | None = None

    @property
    def url(self) -> str:
        """``localhost``, which pyspark's client needs to present a token without TLS; the
        server listens on 127.0.0.1 only, and the client tries each address of the name."""
        return f"sc://localhost:{self.port}"

    @property
    def token(self) -> str:
        """What clients must present (``session_builder(url, token)``); never print it."""
        if self.token_file is None and os.environ.get(TOKEN_ENV):
            return os.environ[TOKEN_ENV]
        return installation_token(self.token_file or self.root / "connect.token")

    @property
    def log_file(self) -> Path:
        return self.root / "connect-server.log"

    def command(self) -> list[str]:
        confs = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.host": "127.0.0.1",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.warehouse.dir": str(self.root / "warehouse"),
            "spark.local.dir": str(self.root / "tmp"),
            "spark.ui.showConsoleProgress": "false",
            # its UI (4040, on SPARK_LOCAL_IP) has no login: any local user may read it, but
            # not kill the runs' jobs; and what Spark writes through Hadoop stays private
            "spark.ui.killEnabled": "false",
            "spark.hadoop.fs.permissions.umask-mode": "077",
            "spark.driver.extraJavaOptions": JVM_OPTIONS,
        }
        argv = [
            str(spark_home() / "sbin" / "start-connect-server.sh"),
            "--wait",
            "--master",
            self.master,
            "--driver-memory",
            self.driver_memory,
        ]
        for key, value in confs.items():
            argv += ["--conf", f"{key}={value}"]
        return argv

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SPARK_HOME=str(spark_home()),
            PYSPARK_PYTHON=sys.executable,
            PYSPARK_DRIVER_PYTHON=sys.executable,
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_LOG_DIR=str(self.root / "logs"),
            SPARK_PID_DIR=str(self.root),
        )
        env[TOKEN_ENV] = self.token
        return env

    def start(self) -> subprocess.Popen[bytes]:
        """Launch the server in its own process group; `wait_ready` tells when it serves."""
        check_java()
        if port_open("127.0.0.1", self.port):
            raise SparkServerError(
                f"port 127.0.0.1:{self.port} is already in use: stop what holds it or set "
                "ECOM_SPARK_CONNECT_PORT"
            )
        for sub in ("logs", "tmp", "warehouse"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return start_group(self.command(), self.log_file, env=self.environment(), cwd=self.root)

    def wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Block until the gRPC port accepts connections; fail with the log if the JVM died."""

        def ready() -> bool:
            if process.poll() is not None:
                raise SparkServerError(
                    f"Spark Connect server exited with {process.returncode}:\n{tail(self.log_file)}"
                )
            return port_open("127.0.0.1", self.port)

        if not wait_until(ready, timeout_s, interval_s=0.5):
            raise SparkServerError(
                f"Spark Connect server not listening on {self.url} after {timeout_s:.0f} s:\n"
                f"{tail(self.log_file)}"
            )
