"""The `ecom` command: run the local platform and look at it.

Exit codes: 0 success/healthy, 1 a part failed or is unhealthy (for `health`: DEGRADED, or the
database cannot be read), 2 bad settings, a bad contract or catalogue file, or usage, 3
`health` found NO_DATA (no batch yet).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ecom_assets.redaction import redact, redact_data, url_secrets
from ecom_assets.resources.pgpass import Passwordless, PasswordSplitError, passwordless, pgpass_file
from ecom_assets.settings import Settings, SettingsError, load_settings
from ecom_assets.stack import supervisor
from ecom_assets.stack.file_modes import STACK_UMASK
from ecom_assets.stack.local import database_url
from ecom_assets.stack.postgres_server import PostgresError, find_bin_dir


def _up(settings: Settings, _args: argparse.Namespace) -> int:
    try:
        return supervisor.Supervisor(settings).up()
    except supervisor.StackError as exc:
        print(redact(f"[up] {exc}"), file=sys.stderr)
        return 1


def _down(settings: Settings, _args: argparse.Namespace) -> int:
    return 0 if supervisor.down(settings) else 1


def _status(settings: Settings, args: argparse.Namespace) -> int:
    parts = supervisor.status(settings)
    secrets = url_secrets(settings.database.database_url)  # a detail may quote a driver error
    if args.json:
        print(json.dumps([redact_data(part.__dict__, secrets) for part in parts], indent=2))
    else:
        for part in parts:
            state = "healthy" if part.healthy else "DOWN"
            print(redact(f"{part.part:<11} {state:<8} {part.detail}", secrets))
    return 0 if all(part.healthy for part in parts) else 1


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from ecom_assets import replay

    try:  # what to replay is checked (and refused) before the database is asked anything
        if args.dead_letters:
            paths = None
        elif args.file is not None:
            paths = replay.find_file(settings, args.file)
        else:
            paths = replay.find_partition(settings, args.partition)
        with psycopg.connect(database_url(settings), autocommit=True) as conn:
            if paths is None:
                result = replay.replay_dead_letters(conn, settings, code=args.code)
            else:
                result = replay.replay_files(conn, settings, paths)
    except replay.ReplayRefused as exc:  # a usage error: a path or pattern where a name belongs
        print(f"[replay] {exc}", file=sys.stderr)
        return 2
    except replay.ReplayError as exc:
        print(f"[replay] {exc}", file=sys.stderr)
        return 1
    detail = f" holding {result.dead_letters} dead letter(s)" if result.dead_letters else ""
    print(f"[replay] {len(result.files)} file(s) back in {settings.input_dir}{detail}")
    return 0


HEALTH_EXIT_CODES = {"HEALTHY": 0, "DEGRADED": 1, "NO_DATA": 3}


def _health(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from ecom_assets.monitoring.health import load_health, report_json, report_lines

    try:
        url = database_url(settings)
        with psycopg.connect(url, connect_timeout=settings.database.db_connect_timeout_s) as conn:
            report = load_health(conn, settings, datetime.now(tz=UTC))
    except (psycopg.Error, OSError) as exc:
        # unknown health is not healthy: monitoring scripts must see a failure
        reason = redact(str(exc), url_secrets(settings.database.database_url))
        what = "[health] cannot read the pipeline's health from the database"
        print(f"{what}: {reason}", file=sys.stderr)
        return 1
    print(report_json(report) if args.json else "\n".join(report_lines(report)))
    return HEALTH_EXIT_CODES[report.state]


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    import psycopg

    from ecom_assets.resources.migrations import apply_migrations, discover_migrations

    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        applied = apply_migrations(conn, discover_migrations())
    print(f"[migrate] applied {len(applied)} new migration(s): {', '.join(applied) or 'none'}")
    return 0


def _contract(settings: Settings, args: argparse.Namespace) -> int:
    from ecom_assets.schema.contract import Severity
    from ecom_assets.schema.contract_file import ContractError, contract_markdown, load_contract

    path = args.file if args.action == "check" else settings.paths.contract
    try:
        contract = load_contract(path)
    except ContractError as exc:
        print(f"[contract] {exc}", file=sys.stderr)
        return 2
    if args.action == "show":
        print(contract_markdown(contract))
        return 0
    tiers = ", ".join(f"{len(contract.codes(s))} {s.value}" for s in Severity)
    print(
        f"[contract] {contract.source}: valid; {len(contract.event_types)} event types, "
        f"rules: {tiers}"
    )
    return 0


def _catalog(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from ecom_assets.resources.catalogue import CatalogueError, clear_catalogue, load_catalogue

    with psycopg.connect(database_url(settings)) as conn:
        if args.action == "clear":
            removed = clear_catalogue(conn)
            print(f"[catalog] {removed} products removed: the catalogue rules no longer apply")
            return 0
        try:
            report = load_catalogue(conn, args.file, replace=args.replace)
        except CatalogueError as exc:
            print(f"[catalog] {exc}", file=sys.stderr)
            return 2
    print(f"[catalog] {args.file}: {report.summary()}")
    return 0


def _passwordless(settings: Settings) -> Passwordless:
    """The database in use, its password moved to the installation's password file."""
    return passwordless(database_url(settings), pgpass_file(settings.paths.state))


def _db_url(settings: Settings, args: argparse.Namespace) -> int:
    """Without --show-password the URL names the 0600 password file instead of holding the
    password: `psql "$(ecom db-url)"` would put it into every local user's view of /proc."""
    if args.show_password:
        print(database_url(settings))
        return 0
    try:
        print(_passwordless(settings).with_passfile())
    except PasswordSplitError as exc:
        print(f"[db-url] ECOM_DATABASE_URL: {exc}; see --show-password", file=sys.stderr)
        return 2
    return 0


def _find_psql(settings: Settings) -> str | None:
    """ECOM_PG_BIN_DIR's psql, the one on PATH, or the one beside the embedded server's."""
    configured = settings.database.pg_bin_dir
    if configured is not None and (configured / "psql").is_file():
        return str(configured / "psql")
    if on_path := shutil.which("psql"):
        return on_path
    with contextlib.suppress(PostgresError):
        beside_server = find_bin_dir(configured) / "psql"
        if beside_server.is_file():
            return str(beside_server)
    return None


def _psql(settings: Settings, args: argparse.Namespace) -> int:
    """Become psql on the database in use. The password goes by PGPASSFILE, never on the
    command line, which every local user can read in /proc/<pid>/cmdline."""
    psql = _find_psql(settings)
    if psql is None:
        print(
            "[psql] psql not found: install PostgreSQL's client (Debian: apt-get install "
            "postgresql-client), or set ECOM_PG_BIN_DIR to a directory holding psql",
            file=sys.stderr,
        )
        return 127
    try:
        database = _passwordless(settings)
    except PasswordSplitError as exc:
        print(f"[psql] ECOM_DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    # psql needs no ECOM_ variable, and ECOM_DATABASE_URL would hand it the password
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOM_")}
    env["PGPASSFILE"] = database.passfile
    sys.stdout.flush()
    os.execve(psql, [psql, database.url, *args.args], env)  # noqa: S606 - no shell, our argv


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ecom", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "up", help="start PostgreSQL, Spark Connect, Dagster and the generator; restart what dies"
    )
    commands.add_parser("down", help="stop everything `up` started")
    status = commands.add_parser("status", help="health of each part and its restarts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    health = commands.add_parser(
        "health", help="pipeline health: exit 0 HEALTHY, 1 DEGRADED or unreadable, 3 NO_DATA"
    )
    health.add_argument("--json", action="store_true", help="machine-readable output")
    db_url = commands.add_parser(
        "db-url",
        help="print the URL of the database in use; its password stays in the 0600 file the URL "
        "names (passfile=), which every libpq client reads",
    )
    db_url.add_argument(
        "--show-password",
        action="store_true",
        help="print the password in the URL, for clients that are not libpq (JDBC)",
    )
    psql = commands.add_parser(
        "psql",
        help="psql on the database in use, its password not on the command line; arguments go "
        "to psql (ecom psql -c 'SELECT 1')",
        prefix_chars="+",  # every argument, -c included, is psql's
        add_help=False,
    )
    psql.add_argument("args", nargs=argparse.REMAINDER)
    commands.add_parser("migrate", help="apply pending sql/ migrations to the database in use")
    replay = commands.add_parser(
        "replay",
        help="ingest a file, a partition or fixed dead letters again (idempotent)",
        description="Files go back to the input directory under the names they arrived with; "
        "if a file of such a name waits there (a producer's new file), nothing is replayed and "
        "the command fails (exit 1): replay again once that file is ingested.",
    )
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--file",
        help="a processed or quarantined file name, matched exactly (no path, no pattern; a "
        "quarantined copy also by its stored name, such as NAME~2.csv); refused while a file of "
        "that name waits in input/",
    )
    what.add_argument(
        "--partition",
        help="an hourly partition key, exactly as e.g. 2026-01-29-10:00 (a path is refused)",
    )
    what.add_argument("--dead-letters", action="store_true", help="open dead letters")
    replay.add_argument("--code", help="with --dead-letters: only rows with this error code")
    contract = commands.add_parser("contract", help="check a contract file, show the one in force")
    contract_actions = contract.add_subparsers(dest="action", required=True)
    check = contract_actions.add_parser(
        "check", help="validate a contract file without starting anything (exit 2 if invalid)"
    )
    check.add_argument("file", type=Path, help="the YAML contract file")
    contract_actions.add_parser("show", help="print the rules in force (ECOM_CONTRACT_FILE)")
    catalog = commands.add_parser("catalog", help="the reference catalogue of products")
    catalog_actions = catalog.add_subparsers(dest="action", required=True)
    load = catalog_actions.add_parser(
        "load", help="upsert products from a CSV (product_id, category[, name, price])"
    )
    load.add_argument("file", type=Path, help="the catalogue CSV")
    load.add_argument(
        "--replace", action="store_true", help="also remove the products the file does not list"
    )
    catalog_actions.add_parser(
        "clear", help="remove every product (the catalogue rules then do not apply)"
    )
    return root


HANDLERS = {
    "up": _up,
    "down": _down,
    "status": _status,
    "health": _health,
    "db-url": _db_url,
    "psql": _psql,
    "migrate": _migrate,
    "replay": _replay,
    "contract": _contract,
    "catalog": _catalog,
}


def _print_redacted_traceback(kind: type[BaseException], exc: BaseException, tb: object) -> None:
    """An uncaught error's traceback, redacted: a driver's message may quote a URL."""
    print(redact("".join(traceback.format_exception(kind, exc, tb))), end="", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sys.excepthook = _print_redacted_traceback
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return 2
    previous = os.umask(STACK_UMASK)  # all an `ecom` command and its children create is private
    try:
        return HANDLERS[args.command](settings, args)
    finally:
        os.umask(previous)


if __name__ == "__main__":
    sys.exit(main())
