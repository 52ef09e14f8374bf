"""The migrate-* commands that bring databases forward or describe the revisions; each acts on every
named database, or on the one given as DB=."""

import io
from contextlib import redirect_stdout
from pathlib import Path

from alembic import command
from alembic.util import CommandError

from src.core.config import project_path
from src.core.databases import DATABASES, get_database
from src.core.schema_versions import alembic_config, show_revisions
from src.migrate.errors import MigrateError, load_scripts, reporting_errors
from src.migrate.lint import LINT_ADVICE, lint_file
from src.migrate.revisions import (
    noting_what_was_done,
    plain_connection,
    read_known_states,
    read_state,
    refuse_pending,
    require_one_head,
    selected,
    touched_databases,
)
from src.migrate.status import model_changes


def upgrade(db: str | None) -> None:
    """Bring every database (or DB=) to head, one database at a time, saying what each did."""
    scripts = load_scripts()
    databases = selected(db)
    read_known_states(databases, scripts)
    require_one_head(scripts)
    for database in databases:
        config = alembic_config(db=database.name)
        with noting_what_was_done(databases, database, "upgraded"), reporting_errors(database):
            command.upgrade(config, "head")
        before = config.attributes["revisions_before"][database.name]
        after = read_state(database, scripts).current
        if before == after:
            print(f"{database.name}: already at head {show_revisions(after)}")
        else:
            print(f"{database.name}: upgraded {show_revisions(before)} -> {show_revisions(after)}")


def history(db: str | None) -> None:
    """Revisions newest first, each with the databases it touches; with DB=, only those touching it."""
    name = get_database(db).name if db else None
    for script in load_scripts().walk_revisions():
        touched = touched_databases(script.path)
        if name and name not in touched:
            continue
        parents = show_revisions(script._versioned_down_revisions)
        head = " (head)" if script.is_head else ""
        databases = "merge" if script.is_merge_point and not touched else ", ".join(touched)
        print(f"{parents} -> {script.revision}{head}  {script.doc}  [{databases}]")


def check(db: str | None) -> None:
    """Fail when any database's models differ from its migrations; each database is compared alone."""
    scripts = load_scripts()
    databases = selected(db)
    states = read_known_states(databases, scripts)
    require_one_head(scripts)
    failures = []
    for database in databases:
        pending = states[database.name].pending
        if pending:
            failures.append(f"{database.name}: {len(pending)} revision(s) not applied; run make migrate-upgrade first")
            continue
        with plain_connection(database) as connection:
            changes = model_changes(connection, database)
        if changes:
            failures.append(f"{database.name}: models differ from migrations: {', '.join(changes)}")
        else:
            print(f"{database.name}: models match migrations")
    if failures:
        raise MigrateError("; ".join(failures))


def create(message: str, db: str | None) -> None:
    """Autogenerate one revision from the models; refuse to write an empty one."""
    if not message.strip():
        raise MigrateError(
            f'MSG is required: make migrate-create MSG="Add user profile fields" [DB={"|".join(DATABASES)}]'
        )
    scripts = load_scripts()
    databases = selected(db)
    states = read_known_states(databases, scripts)
    require_one_head(scripts)
    refuse_pending(databases, states)
    with redirect_stdout(io.StringIO()):  # the post-write hooks announce themselves
        script = command.revision(alembic_config(db=db, autogenerate=True), message=message, autogenerate=True)
    if not script:
        names = ", ".join(database.name for database in databases)
        raise MigrateError(f"no changes detected in {names}; no revision written")
    assert not isinstance(script, list)
    path = project_path(script.path)
    print(f"created {path} (touches: {', '.join(touched_databases(script.path))})")
    findings = lint_file(Path(script.path), db)
    for finding in findings:
        print(finding)
    if findings:
        print(f"review the {len(findings)} risky operation(s) above before upgrading: {LINT_ADVICE}")


def sql(db: str | None, out: str | None, start: str | None) -> None:
    """Write the offline SQL from START (default: empty) to head, per database, to OUT/<db>.sql or stdout."""
    scripts = load_scripts()
    require_one_head(scripts)
    if start == "base":
        start = None
    if start and start not in {script.revision for script in scripts.walk_revisions()}:
        raise MigrateError(
            f"FROM={start} is not a revision in migrations/versions; pass one full id from make migrate-history,"
            " or base"
        )
    revisions = f"{start}:head" if start else "head"
    for database in selected(db):
        try:
            command.upgrade(alembic_config(db=database.name, out=out or ""), revisions, sql=True)
        except CommandError as error:
            if not database.url.startswith("sqlite"):
                raise
            raise MigrateError(
                f"{database.name}: a revision alters a table, which SQLite does by rebuilding it from the live"
                f" database, so it has no offline SQL; set {database.url_setting.upper()} to PostgreSQL to review"
                " production SQL"
            ) from error
