"""The Dagster UI end to end: a real `ecom up`, generated files, Debian's Chromium via Playwright.

What a person sees in the webserver is asserted on the rendered pages (the GraphQL endpoint is
only used to dismiss the first-visit newsletter dialog): the asset graph with the ingestion and
analytics assets, the running sensor, the sensor-launched `ingest_job` run that succeeded for the
partition of the dropped files, and the asset checks that passed for it. The screenshots saved on
the way (with ECOM_UI_SCREENSHOTS=1, `make screenshots`) are the ones the README shows.

Needs /usr/bin/chromium (`scripts/install_browser.sh`); Playwright's own browser download is not
used. Without the browser the test is skipped, or fails when CI is set.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import wait_until
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
FILES = 4  # 200 rows; seed 7 injects a few anomalies (dead letters), every check passes
UI_TIMEOUT_MS = 30_000
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


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the stack's own http://127.0.0.1 webserver
        url + "/graphql",
        data=json.dumps({"query": query}).encode(),
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


@pytest.fixture(scope="module")
def platform(chromium: Path) -> Iterator[Platform]:
    """The whole platform in a throwaway home, with generated files committed by the sensor's run.

    The stack's own generator is off: at one file a second it keeps the first run draining new
    files for minutes on a busy 2-core machine, so no run would finish within the test's budget.
    The files are written by the same generator, once.
    """
    home = Path(tempfile.mkdtemp(prefix="ecom-test-ui-"))
    home.chmod(0o755)  # PostgreSQL may run as an unprivileged user and must reach its data
    env = isolated_environment(home)
    env["ECOM_GENERATOR_ENABLED"] = "false"
    process = None
    try:
        process = start_stack(env, timeout_s=180)
        url = f"http://127.0.0.1:{env['ECOM_DAGSTER_PORT']}"
        # the first visit of an instance opens a newsletter dialog over every page
        assert graphql(url, "mutation { setNuxSeen }") == {"data": {"setNuxSeen": True}}
        partition = drop_generated_files(env, home)
        db_url = ecom(env, "db-url")

        def committed_files() -> int:
            with psycopg.connect(db_url) as conn:
                query = "SELECT count(*) FROM data_quality_metrics WHERE partition_key = %s"
                return conn.execute(query, (partition,)).fetchone()[0]

        assert wait_until(lambda: committed_files() >= FILES, 150, interval_s=1), (
            f"{FILES} files not committed to partition {partition} within 150 s"
        )
        yield Platform(url=url, partition=partition)
    finally:
        subprocess.run([*ECOM, "down"], env=env, capture_output=True, timeout=120)
        if process is not None:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, platform: Platform) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=platform.url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """With ECOM_UI_SCREENSHOTS=1 (`make screenshots`), save the viewport as docs/images/<name>.

    Opt-in, so an ordinary test run does not rewrite the tracked images (they hold dates).
    """
    expect(page.get_by_role("navigation").get_by_role("link", name="Jobs")).to_be_visible()
    if os.environ.get("ECOM_UI_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=IMAGES / name)


def test_asset_graph_shows_ingestion_and_analytics_assets(page: Page) -> None:
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


def test_sensor_is_running_and_launched_a_successful_run(page: Page, platform: Platform) -> None:
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


def run_rows(page: Page, partition: str, status: str) -> Locator:
    """Rows of a runs list: ingest_job runs of partition launched by the sensor, with status."""
    return (
        page.locator(ROW)
        .filter(has_text=f"partition: {partition}")
        .filter(has=page.get_by_role("link", name="ingest_job", exact=True))
        .filter(has=page.get_by_role("link", name="input_files_sensor", exact=True))
        .filter(has=page.get_by_text(status, exact=True))
    )


def test_runs_list_shows_the_sensor_launched_run_succeeded(page: Page, platform: Platform) -> None:
    page.goto("/runs")
    succeeded = run_rows(page, platform.partition, "Success")
    # the list refreshes itself every few seconds: a run that just ended shows up there
    expect(succeeded.first).to_be_visible(timeout=60_000)
    screenshot(page, "runs.png")

    succeeded.first.get_by_role("link", name="View", exact=True).click()
    expect(page.get_by_text("Launched by input_files_sensor").first).to_be_visible()
    expect(page.get_by_text(f"partition: {platform.partition}", exact=True)).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()


def test_asset_checks_passed_for_the_partition(page: Page, platform: Platform) -> None:
    page.goto("/assets/data_quality_metrics?view=checks&checkDetail=rows_conserved")
    expect(page.get_by_text(f"Checks ({len(METRICS_CHECKS)})", exact=True)).to_be_visible()
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
    expect(latest.get_by_text(platform.partition, exact=True)).to_be_visible()
    expect(page.get_by_role("row", name="rows_read 200")).to_be_visible()  # FILES x 50 rows
    screenshot(page, "asset-checks.png")

    # the evaluation's timestamp links to its run: the sensor's run of the partition
    latest.get_by_role("link").first.click()
    expect(page.get_by_text(f"partition: {platform.partition}", exact=True)).to_be_visible()
    expect(page.get_by_text("Launched by input_files_sensor").first).to_be_visible()
    events_filter = page.get_by_placeholder("Filter…")
    for check in (*METRICS_CHECKS, "unique_event_ids"):
        events_filter.fill(check)
        expect(page.get_by_text(f"Check {check} succeeded for materialization of")).to_be_visible()

    page.goto("/assets/ecommerce_events?view=checks")
    item = page.locator(ROW).filter(has=page.get_by_text("unique_event_ids", exact=True))
    expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()


def test_the_events_asset_shows_the_contract_in_force(page: Page, platform: Platform) -> None:
    """The contract is configuration: the asset's metadata names the file in force, and its
    Markdown lists the event types and every rule with its severity."""
    page.goto("/assets/ecommerce_events")
    metadata = page.locator("tr").filter(has=page.get_by_text("contract_file", exact=True))
    expect(metadata.get_by_text("default_contract.yaml")).to_be_visible(timeout=30_000)
    contract = page.locator("tr").filter(has=page.get_by_text("contract", exact=True))
    contract.get_by_text("[Show Markdown]").click()
    for text in ("UNKNOWN_PRODUCT", "MISSING_EVENT_ID", "error (always)", "remove_from_cart"):
        expect(page.get_by_role("dialog").get_by_text(text).first).to_be_visible()
    page.keyboard.press("Escape")
    page.goto("/assets/ecommerce_events?view=checks")
    item = page.locator(ROW).filter(has=page.get_by_text("quality_warnings", exact=True))
    expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()
