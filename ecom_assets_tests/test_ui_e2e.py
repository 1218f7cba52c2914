"""The Dagster UI end to end: a real `ecom up`, generated files, Debian's Chromium via Playwright.

What a person sees in the webserver is asserted on the rendered pages (the GraphQL endpoint only
dismisses the first-visit newsletter dialog and finds the run in progress). TestPlatform: the
asset graph with the ingestion and analytics assets, the running sensor, the sensor-launched
`ingest_job` run that succeeded for the partition of the dropped files, and the asset checks that
passed for it. TestLiveTraffic (the stack's generator on, runs lingering for their hour): the
batch a run in progress just committed is on the asset page with its partition and passed
checks, and after `ecom down` + `ecom up` the stopped run ended Success or Canceled and no run is
in Failure. The screenshots saved on the way (with ECOM_UI_SCREENSHOTS=1, `make screenshots`) are
the ones the README shows.

Needs /usr/bin/chromium (`scripts/install_browser.sh`); Playwright's own browser download is not
used. Without the browser the test is skipped, or fails when CI is set.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import wait_until
from ecom_assets.stack.runs import STOPPING
from ecom_assets_tests.test_generator_support import generate_files

ECOM = [sys.executable, "-m", "ecom_assets.cli"]
CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium keeps dialling out (refused on closed networks)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
VIEWPORT = {"width": 1440, "height": 900}

INGESTION_ASSETS = ("ecommerce_events", "dead_letter_events", "data_quality_metrics")
ANALYTICS_ASSETS = (
    "v_hourly_event_summary", "v_category_performance", "v_user_segment_analysis",
    "v_data_quality_dashboard", "v_user_sessions",
)  # fmt: skip
METRICS_CHECKS = ("validity_rate", "error_concentration", "rows_conserved")
EVENTS_CHECKS = ("rows_in_one_place", "quality_warnings")
SECONDS_AGO = re.compile(r"^\d+ seconds? ago$")  # a materialization's age on the asset page
CSV_NAME = re.compile(r"events_\d{8}T\d+Z_\w+\.csv")  # the generator's file names
BATCH_SCOPE = re.compile(r"^scope batch \d+ of this run$")  # a check evaluated as its batch commits
STOPPED_STATUS = re.compile(r"^(Success|Canceled)$")
FILES = 4  # 200 rows; seed 7 injects a few anomalies (dead letters), every check passes
UI_TIMEOUT_MS = 30_000
STACK_START_S = 180
ROW = '[class*="VirtualizedTable_row"]'  # a row of Dagster's lists: runs, assets, checks


@dataclass(frozen=True)
class Platform:
    url: str
    partition: str


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run scripts/install_browser.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def start_stack(env: dict[str, str], timeout_s: float) -> subprocess.Popen[str]:
    """`ecom up` in the background; returns once it reports every part healthy."""
    process = subprocess.Popen(
        [*ECOM, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # keeps reading, so a chatty stack never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip())

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if "all parts healthy" in seen[-1]:
            return process
        if process.poll() is not None and lines.empty():
            break
    process.kill()
    pytest.fail("ecom up did not become healthy:\n" + "\n".join(seen))


def ecom(env: dict[str, str], *args: str, timeout_s: float = 60) -> str:
    result = subprocess.run(
        [*ECOM, *args], env=env, capture_output=True, text=True, timeout=timeout_s, check=True
    )
    return result.stdout.strip()


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the stack's own http://127.0.0.1 webserver
        url + "/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)


def drop_generated_files(env: dict[str, str], home: Path) -> str:
    """Write FILES generated CSVs into the input directory; returns their hourly partition.

    Seeded, and simulated from the start of the current UTC hour: the rows are the same on every
    run and the file names (which decide the partition) never straddle an hour.
    """
    hour = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    generate_files(
        home / "data" / "input", home / "data" / "logs", hour,
        "--files", str(FILES), "--interval", "0", "--events-per-file", "50", "--seed", "7",
        env=env,
    )  # fmt: skip
    return hour.strftime("%Y-%m-%d-%H:00")


@dataclass
class Stack:
    """An `ecom up` in a throwaway home; restart() stops and starts it again on the same home."""

    home: Path
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['ECOM_DAGSTER_PORT']}"

    def stop(self) -> None:
        subprocess.run([*ECOM, "down"], env=self.env, capture_output=True, timeout=120)
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.process = start_stack(self.env, timeout_s=STACK_START_S)


@contextmanager
def running_stack(prefix: str, **settings: str) -> Iterator[Stack]:
    """A healthy stack with settings (ECOM_ variables) on top of an isolated environment; always
    stopped (`ecom down`) and its home removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)  # PostgreSQL may run as an unprivileged user and must reach its data
    stack = Stack(home=home, env={**isolated_environment(home), **settings})
    try:
        stack.process = start_stack(stack.env, timeout_s=STACK_START_S)
        # the first visit of an instance opens a newsletter dialog over every page
        assert graphql(stack.url, "mutation { setNuxSeen }") == {"data": {"setNuxSeen": True}}
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


# Class-scoped, not module-scoped: each stack is stopped when its class's tests are done, so the
# two stacks of this module never run at the same time on a small machine.
@pytest.fixture(scope="class")
def platform(chromium: Path) -> Iterator[Platform]:
    """The whole platform in a throwaway home, with generated files committed by the sensor's run.

    The stack's own generator is off: at its default rate it keeps a run lingering for new files
    of its hour (TestLiveTraffic), so the run this class checks would not end within its budget.
    The files are written by the same generator, once.
    """
    with running_stack("ecom-test-ui-", ECOM_GENERATOR_ENABLED="false") as stack:
        partition = drop_generated_files(stack.env, stack.home)
        db_url = ecom(stack.env, "db-url")

        def committed_files() -> int:
            with psycopg.connect(db_url) as conn:
                query = "SELECT count(*) FROM data_quality_metrics WHERE partition_key = %s"
                return conn.execute(query, (partition,)).fetchone()[0]

        assert wait_until(lambda: committed_files() >= FILES, 150, interval_s=1), (
            f"{FILES} files not committed to partition {partition} within 150 s"
        )
        yield Platform(url=stack.url, partition=partition)


@dataclass(frozen=True)
class Live:
    stack: Stack
    db_url: str


@dataclass(frozen=True)
class InProgress:
    """An ingest run still STARTED, with the batches it has committed and reported so far."""

    run_id: str
    partition: str
    batches: int


@pytest.fixture(scope="class")
def live(chromium: Path) -> Iterator[Live]:
    """The platform with its generator on (default rate) and ingest runs that linger for their
    hour, as in production; the suite's environment makes runs end at once, so the stack gets
    its own values. Yields once an ingest run is in progress with batches reported."""
    settings = {"ECOM_INGEST_LINGER_S": "30", "ECOM_INGEST_MAX_RUN_S": "600"}
    with running_stack("ecom-test-ui-live-", **settings) as stack:
        live = Live(stack=stack, db_url=ecom(stack.env, "db-url"))
        run_in_progress(live)
        yield live


def ingest_runs(url: str, *statuses: str) -> list[dict]:
    """The ingest_job runs with one of statuses, newest first (GraphQL)."""
    query = """query ($statuses: [RunStatus!]) {
      runsOrError(filter: {pipelineName: "ingest_job", statuses: $statuses}) {
        ... on Runs { results { runId status tags { key value } } } } }"""
    data = graphql(url, query, {"statuses": list(statuses)})
    return data["data"]["runsOrError"]["results"]


def all_runs(url: str) -> list[dict]:
    query = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
    return graphql(url, query)["data"]["runsOrError"]["results"]


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def reported_batches(url: str, run_id: str, partition: str) -> int:
    """Materializations of ecommerce_events for partition reported by the run (one per batch)."""
    query = """query ($partition: String!) {
      assetOrError(assetKey: {path: ["ecommerce_events"]}) {
        ... on Asset {
          assetMaterializations(partitions: [$partition], limit: 200) { runId } } } }"""
    asset = graphql(url, query, {"partition": partition})["data"]["assetOrError"]
    events = asset["assetMaterializations"]
    return sum(event["runId"] == run_id for event in events)


def committed_files(db_url: str, run_id: str) -> int:
    with psycopg.connect(db_url) as conn:
        query = "SELECT count(*) FROM data_quality_metrics WHERE run_id = %s"
        return conn.execute(query, (run_id,)).fetchone()[0]


def run_in_progress(live: Live, batches: int = 2, timeout_s: float = 180) -> InProgress:
    """The ingest run in progress once it has committed and reported at least batches batches.

    Not within 90 s of the next hour: the run of the ending hour stops taking files then, and
    the partition it shows would not stay the current one for the length of a test.
    """
    now = datetime.now(tz=UTC)
    to_next_hour = 3600 - (now.minute * 60 + now.second)
    if to_next_hour < 90:
        time.sleep(to_next_hour + 5)
    found: list[InProgress] = []

    def ready() -> bool:
        for run in ingest_runs(live.stack.url, "STARTED"):
            run_id, partition = run["runId"], tag(run, "dagster/partition")
            assert partition is not None, run
            reported = reported_batches(live.stack.url, run_id, partition)
            if reported >= batches and committed_files(live.db_url, run_id) >= batches:
                found.append(InProgress(run_id, partition, reported))
                return True
        return False

    assert wait_until(ready, timeout_s, interval_s=2), (
        f"no ingest run in progress with {batches} batches within {timeout_s} s: "
        f"{[(run['runId'], run['status']) for run in all_runs(live.stack.url)]}"
    )
    return found[-1]


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser: Browser, url: str) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, platform: Platform) -> Iterator[Page]:
    with new_page(browser, platform.url) as page:
        yield page


@pytest.fixture
def live_page(browser: Browser, live: Live) -> Iterator[Page]:
    with new_page(browser, live.stack.url) as page:
        yield page


def metrics_checks_passed(page: Page) -> Locator:
    """On a checks tab of data_quality_metrics: each metrics check Succeeded, and the latest
    evaluation shown Passed; returns that evaluation's panel."""
    for check in METRICS_CHECKS:
        item = page.locator(ROW).filter(has=page.get_by_text(check, exact=True))
        expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()
    latest = (
        page.locator("div")
        .filter(has=page.get_by_text("Evaluation result", exact=True))
        .filter(has=page.get_by_text("Partition", exact=True))
        .last
    )
    expect(latest.get_by_text("Passed", exact=True)).to_be_visible()
    return latest


def screenshot(page: Page, name: str) -> None:
    """With ECOM_UI_SCREENSHOTS=1 (`make screenshots`), save the viewport as docs/images/<name>.

    Opt-in, so an ordinary test run does not rewrite the tracked images (they hold dates).
    """
    expect(page.get_by_role("navigation").get_by_role("link", name="Jobs")).to_be_visible()
    if os.environ.get("ECOM_UI_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=IMAGES / name)


def run_rows(page: Page, partition: str, status: str) -> Locator:
    """Rows of a runs list: ingest_job runs of partition launched by the sensor, with status."""
    return (
        page.locator(ROW)
        .filter(has_text=f"partition: {partition}")
        .filter(has=page.get_by_role("link", name="ingest_job", exact=True))
        .filter(has=page.get_by_role("link", name="input_files_sensor", exact=True))
        .filter(has=page.get_by_text(status, exact=True))
    )


class TestPlatform:
    """Files dropped once with the generator off, committed by the sensor's run."""

    def test_asset_graph_shows_ingestion_and_analytics_assets(self, page: Page) -> None:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": 1500})  # all four groups
        page.goto("/asset-groups")
        expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
        graph = page.locator("svg foreignObject")
        for group in ("platform", "ingestion", "analytics", "monitoring"):
            expect(graph.get_by_text(group, exact=True).first).to_be_visible()
        # groups start collapsed: the graph's settings menu expands them to show every asset
        page.get_by_role("button", name="settings", exact=True).click()
        page.get_by_role("menuitem", name="Expand all groups").click()
        page.keyboard.press("Escape")
        page.get_by_role("button", name="panel_show_right", exact=True).click()  # hide the tree
        for name in (*INGESTION_ASSETS, *ANALYTICS_ASSETS, "database_schema", "pipeline_health"):
            expect(graph.get_by_text(name, exact=True)).to_be_visible()
        metrics_node = graph.filter(has=page.get_by_text("data_quality_metrics", exact=True))
        expect(metrics_node.get_by_text("3 / 3 Passed")).to_be_visible()
        screenshot(page, "asset-graph.png")

        page.goto("/assets")  # the catalog: every asset by name, with its group
        for group, names in (("ingestion", INGESTION_ASSETS), ("analytics", ANALYTICS_ASSETS)):
            for name in names:
                row = page.locator(ROW).filter(has=page.locator(f'a[href="/assets/{name}"]'))
                expect(row.get_by_role("link", name=group)).to_be_visible()

    def test_sensor_is_running_and_launched_a_successful_run(
        self, page: Page, platform: Platform
    ) -> None:
        page.goto("/automation")
        expect(page.get_by_text("input_files_sensor", exact=True)).to_be_visible()

        page.goto("/locations/ecom/sensors/input_files_sensor")
        running = page.get_by_role("row", name="Running", exact=True)
        expect(running.get_by_role("checkbox")).to_be_checked()
        target = page.get_by_role("row").filter(has=page.get_by_role("cell", name="Target"))
        expect(target.get_by_role("link", name="ingest_job")).to_be_visible()
        page.get_by_role("button", name="Runs", exact=True).click()  # the runs this sensor launched
        expect(run_rows(page, platform.partition, "Success").first).to_be_visible(timeout=60_000)
        screenshot(page, "sensor.png")

    def test_runs_list_shows_the_sensor_launched_run_succeeded(
        self, page: Page, platform: Platform
    ) -> None:
        page.goto("/runs")
        succeeded = run_rows(page, platform.partition, "Success")
        # the list refreshes itself every few seconds: a run that just ended shows up there
        expect(succeeded.first).to_be_visible(timeout=60_000)
        screenshot(page, "runs.png")

        succeeded.first.get_by_role("link", name="View", exact=True).click()
        expect(page.get_by_text("Launched by input_files_sensor").first).to_be_visible()
        expect(page.get_by_text(f"partition: {platform.partition}", exact=True)).to_be_visible()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()

    def test_asset_checks_passed_for_the_partition(self, page: Page, platform: Platform) -> None:
        page.goto("/assets/data_quality_metrics?view=checks&checkDetail=rows_conserved")
        expect(page.get_by_text(f"Checks ({len(METRICS_CHECKS)})", exact=True)).to_be_visible()
        latest = metrics_checks_passed(page)
        expect(latest.get_by_text(platform.partition, exact=True)).to_be_visible()
        for read in ("rows_read", "ledger_rows_read"):  # FILES x 50 rows, counted on both sides
            expect(page.get_by_role("row", name=f"{read} 200", exact=True)).to_be_visible()
        screenshot(page, "asset-checks.png")

        # the evaluation's timestamp links to its run: the sensor's run of the partition
        latest.get_by_role("link").first.click()
        expect(page.get_by_text(f"partition: {platform.partition}", exact=True)).to_be_visible()
        expect(page.get_by_text("Launched by input_files_sensor").first).to_be_visible()
        events_filter = page.get_by_placeholder("Filter…")
        for check in (*METRICS_CHECKS, "rows_in_one_place"):
            events_filter.fill(check)
            expect(
                page.get_by_text(f"Check {check} succeeded for materialization of")
            ).to_be_visible()

        page.goto("/assets/ecommerce_events?view=checks")
        item = page.locator(ROW).filter(has=page.get_by_text("rows_in_one_place", exact=True))
        expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()

    def test_the_events_asset_shows_the_contract_in_force(
        self, page: Page, platform: Platform
    ) -> None:
        """The contract is configuration: the asset's metadata names the file in force, and its
        Markdown lists the event types and every rule with its severity."""
        page.goto("/assets/ecommerce_events")
        metadata = page.locator("tr").filter(has=page.get_by_text("contract_file", exact=True))
        expect(metadata.get_by_text("default_contract.yaml")).to_be_visible(timeout=30_000)
        contract = page.locator("tr").filter(has=page.get_by_text("contract", exact=True))
        dialog = page.get_by_role("dialog")

        def contract_shown() -> bool:
            """Open the Markdown and read it whole; the page re-renders as downstream runs
            materialize, and a dialog opened meanwhile may close with it."""
            page.keyboard.press("Escape")  # a dialog left open would take the click
            contract.get_by_text("[Show Markdown]").click()
            try:
                for text in (
                    "UNKNOWN_PRODUCT", "MISSING_EVENT_ID", "error (always)", "remove_from_cart"
                ):  # fmt: skip
                    expect(dialog.get_by_text(text).first).to_be_visible(timeout=5_000)
            except AssertionError:
                return False
            return True

        assert any(contract_shown() for _ in range(5)), "the contract's Markdown never stayed open"
        page.keyboard.press("Escape")
        page.goto("/assets/ecommerce_events?view=checks")
        item = page.locator(ROW).filter(has=page.get_by_text("quality_warnings", exact=True))
        expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()


def total_files(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM data_quality_metrics").fetchone()[0]


class TestLiveTraffic:
    """The generator on at its default rate, and an ingest run in progress for the hour: each
    batch it commits is on the asset page at once, and a restart ends it without a failure."""

    def test_asset_page_shows_the_batch_materialized_while_the_run_is_in_progress(
        self, live_page: Page, live: Live
    ) -> None:
        page = live_page
        run = run_in_progress(live)
        page.goto("/assets/ecommerce_events")
        status = page.locator("div").filter(
            has=page.get_by_text("Latest materialization", exact=True)
        )
        expect(status.get_by_text(run.partition, exact=True).first).to_be_visible()
        expect(status.get_by_text(SECONDS_AGO).first).to_be_visible()
        files = page.get_by_role("row").filter(has=page.get_by_text("source_files", exact=True))
        expect(files.get_by_text(CSV_NAME)).to_be_visible()
        screenshot(page, "asset-live.png")

        # the latest materializations of the partition come from the run in progress
        page.goto(f"/assets/ecommerce_events?view=events&partition={run.partition}")
        text = f"Partition {run.partition} materialized in run {run.run_id[:8]}"
        expect(page.get_by_text(text).first).to_be_visible()

        page.goto("/runs")
        rows = run_rows(page, run.partition, "Started")
        in_progress = rows.filter(has=page.get_by_role("link", name=run.run_id[:8]))
        expect(in_progress).to_be_visible()

        # each batch's checks are evaluated as it commits, over that batch's files
        page.goto("/assets/data_quality_metrics?view=checks&checkDetail=rows_conserved")
        latest = metrics_checks_passed(page)
        expect(latest.get_by_text(run.partition, exact=True)).to_be_visible()
        expect(page.get_by_role("row", name=BATCH_SCOPE)).to_be_visible()
        page.goto("/assets/ecommerce_events?view=checks")
        for check in EVENTS_CHECKS:
            item = page.locator(ROW).filter(has=page.get_by_text(check, exact=True))
            expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()

        # all of it was seen while the run was still taking files
        started = {r["runId"] for r in ingest_runs(live.stack.url, "STARTED")}
        assert run.run_id in started, f"run {run.run_id} ended before the page was checked"

    def test_a_restart_leaves_no_run_failed(self, live_page: Page, live: Live) -> None:
        page = live_page
        run = run_in_progress(live)
        before = total_files(live.db_url)
        live.stack.restart()  # `ecom down`, then `ecom up` on the same home
        restarted = time.monotonic()
        # the generator goes on writing: runs of the hour commit new files again
        assert wait_until(lambda: total_files(live.db_url) > before, 120, interval_s=2)
        time.sleep(max(0.0, 30 - (time.monotonic() - restarted)))

        statuses = {r["runId"]: r["status"] for r in all_runs(live.stack.url)}
        assert statuses[run.run_id] in ("SUCCESS", "CANCELED"), statuses
        assert "FAILURE" not in statuses.values(), statuses

        # the ingest job's runs: the stopped one ended as stopped, a new one took the hour over
        page.goto("/locations/ecom/jobs/ingest_job/runs")
        stopped = page.locator(ROW).filter(has=page.get_by_role("link", name=run.run_id[:8]))
        expect(stopped.get_by_text(STOPPED_STATUS)).to_be_visible()
        expect(page.locator(ROW).filter(has=page.get_by_text("Failure", exact=True))).to_have_count(
            0
        )
        screenshot(page, "runs-after-restart.png")

        # the Failed tab of every run (Failure or Canceled): no run of any job in Failure
        page.goto("/runs")
        page.get_by_text("Failed", exact=True).first.click()
        expect(page.get_by_text("Status is any of")).to_be_visible()
        loaded = page.get_by_text("No matching runs", exact=True).or_(page.locator(ROW).first)
        expect(loaded.first).to_be_visible()
        expect(page.locator(ROW).filter(has=page.get_by_text("Failure", exact=True))).to_have_count(
            0
        )

        # the stopped run's log: told to stop, it finished the batches in flight
        page.goto(f"/runs/{run.run_id}")
        expect(page.get_by_text(STOPPED_STATUS).first).to_be_visible()
        page.get_by_placeholder("Filter…").fill("stop")
        expect(page.get_by_text(STOPPING).first).to_be_visible()
        expect(page.get_by_text("stop requested, finishing the batches in flight")).to_be_visible()
