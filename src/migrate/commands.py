"""The migrate commands, one function each: ``make migrate-<command>`` runs it.

A function's docstring and signature are the whole of its command line (src/migrate/__main__.py builds the
CLI and ``make help`` from them): each option is annotated with the Make variable that sets it. Adding a
command is adding a function here and naming it in ``COMMANDS``.
"""

import io
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from src.core.config import get_settings, project_path
from src.core.databases import DATABASES, Database, selected_databases
from src.core.schema_versions import SchemaState, alembic_config, ancestry, schema_state, show_revisions
from src.migrate.failures import MigrateError
from src.migrate.lint import LINT_ADVICE, lint_file, lint_revisions, revision_files
from src.migrate.lock_retries import with_lock_retries
from src.migrate.revisions import (
    database_connections,
    load_scripts,
    noting_what_was_done,
    read_known_states,
    read_state,
    refuse_pending,
    require_one_head,
    touched_databases,
)
from src.migrate.rollback import refuse_different_revisions, step_back_target
from src.migrate.status import model_changes, status_rows


@dataclass(frozen=True)
class Option:
    """A command's option: the Make variable that sets it, and what it does."""

    variable: str
    help: str


DB = Annotated[str | None, Option("DB", "act on this database only")]
MSG = Annotated[str, Option("MSG", "the revision's message")]
POST_DEPLOY = Annotated[bool, Option("POST_DEPLOY", "post-deploy revisions: applied once the new code serves")]


def upgrade(db: DB = None) -> None:
    """Before a deploy: bring all databases (or DB=) to head, post-deploy revisions aside."""
    _upgrade(db, post_deploy=False)


def post_deploy(db: DB = None) -> None:
    """Once the new code serves everywhere: apply the post-deploy revisions too."""
    _upgrade(db, post_deploy=True)


def _upgrade(db: str | None, *, post_deploy: bool) -> None:
    """One database at a time, each on one connection that holds its migration lock throughout, saying what each
    did; post-deploy revisions, and those after them, wait for ``post_deploy``."""
    scripts = load_scripts()
    databases = selected_databases(db)
    with database_connections(databases, migrating=True) as connections:
        states = read_known_states(connections, databases, scripts)
        require_one_head(scripts)
        plans = {name: state.pending if post_deploy else state.before_deploy for name, state in states.items()}
        refuse_risky_revisions(scripts, databases, plans)
        for database in databases:
            before = states[database.name]
            config = alembic_config(db=database.name, connections=connections)
            with noting_what_was_done(databases, database, "upgraded"):
                for target in upgrade_targets(scripts, before, post_deploy=post_deploy):
                    with_lock_retries(database, partial(command.upgrade, config, target))
            after = read_state(connections[database.name], database, scripts)
            if before.current != after.current:
                done = f"upgraded {show_revisions(before.current)} -> {show_revisions(after.current)}"
            else:
                done = f"{'at' if after.post_deploy else 'already at head'} {show_revisions(after.current)}"
            if after.post_deploy:
                done += f"; {waiting_for_post_deploy(scripts, after.post_deploy)}"
            print(f"{database.name}: {done}")


def upgrade_targets(scripts: ScriptDirectory, state: SchemaState, *, post_deploy: bool) -> list[str]:
    """What to upgrade to: head, or (post-deploy revisions waiting) the newest revisions before them, none of
    which descends from another: upgrading to each applies all that come before the post-deploy ones."""
    if post_deploy or not state.post_deploy:
        return ["head"]
    ready = state.before_deploy
    return [
        revision
        for revision in ready
        if not any(revision in ancestry(scripts, (other,)) for other in ready if other != revision)
    ]


def post_deploy_revisions(scripts: ScriptDirectory, waiting: tuple[str, ...]) -> str:
    """'post-deploy revision abc (Drop users.name) and 2 after it'."""
    first = scripts.get_revision(waiting[0])
    assert first is not None
    after = f" and {len(waiting) - 1} after it" if len(waiting) > 1 else ""
    return f"post-deploy revision {first.revision} ({first.doc}){after}"


def waiting_for_post_deploy(scripts: ScriptDirectory, waiting: tuple[str, ...]) -> str:
    return (
        f"{post_deploy_revisions(scripts, waiting)} waits: run make migrate-post-deploy once the new code serves"
        " everywhere"
    )


def refuse_risky_revisions(
    scripts: ScriptDirectory, databases: list[Database], plans: dict[str, tuple[str, ...]]
) -> None:
    """Refuse, before migrating anything, revisions about to be applied whose lint findings are not accepted.

    On SQLite they are applied after a warning: the files are a laptop's, with no live service on them.
    """
    databases_of: dict[Path, list[str]] = {}
    for name, revisions in plans.items():
        for revision in revisions:
            script = scripts.get_revision(revision)
            assert script is not None
            databases_of.setdefault(Path(script.path), []).append(name)
    findings = lint_revisions(databases_of)
    found_in = {finding.database for finding in findings}
    for finding in findings:
        print(finding, file=sys.stderr)
    settings = get_settings()
    refused = [name for name in DATABASES if name in found_in and not settings.database_url(name).startswith("sqlite")]
    if refused:
        raise MigrateError(
            f"{', '.join(refused)}: risky operations in revisions not applied yet (listed above); nothing was"
            f" migrated: {LINT_ADVICE}"
        )
    if found_in:
        print(
            f"warning: {', '.join(name for name in DATABASES if name in found_in)}: applying revisions with risky"
            " operations (listed above) to SQLite; on PostgreSQL make migrate-upgrade refuses them until each is"
            " made safe or accepted",
            file=sys.stderr,
        )


def rollback(db: DB = None) -> None:
    """Step back one revision (all databases only when at the same revision)."""
    # Several heads are no reason to refuse: a developer may step back from a branch to redo it on the other one.
    scripts = load_scripts()
    databases = selected_databases(db)
    with database_connections(databases, migrating=True) as connections:
        states = read_known_states(connections, databases, scripts)
        current = refuse_different_revisions({name: state.current for name, state in states.items()})
        target = step_back_target(scripts, current)
        for database in databases:
            config = alembic_config(db=database.name, connections=connections)
            with noting_what_was_done(databases, database, "rolled back"):
                with_lock_retries(database, partial(command.downgrade, config, target))
            after = read_state(connections[database.name], database, scripts).current
            print(f"{database.name}: rolled back {show_revisions(current)} -> {show_revisions(after)}")


def status(db: DB = None) -> None:
    """Current revision, head, pending and model drift per database."""
    scripts = load_scripts()
    rows, problems = status_rows(scripts, selected_databases(db))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    require_one_head(scripts)
    if problems:
        raise MigrateError("; ".join(problems))


def history(db: DB = None) -> None:
    """Revisions newest first with the databases they touch."""
    name = selected_databases(db)[0].name if db else None
    for script in load_scripts().walk_revisions():
        touched = touched_databases(script.path)
        if name and name not in touched:
            continue
        parents = show_revisions(script._versioned_down_revisions)
        head = " (head)" if script.is_head else ""
        databases = "merge" if script.is_merge_point and not touched else ", ".join(touched)
        print(f"{parents} -> {script.revision}{head}  {script.doc}  [{databases}]")


def check(db: DB = None) -> None:
    """Fail when any database's models differ from its migrations."""
    scripts = load_scripts()
    databases = selected_databases(db)
    failures = []
    with database_connections(databases) as connections:
        states = read_known_states(connections, databases, scripts)
        require_one_head(scripts)
        for database in databases:
            pending = states[database.name].pending
            if pending:
                failures.append(
                    f"{database.name}: {len(pending)} revision(s) not applied; run make migrate-upgrade first"
                )
                continue
            changes = model_changes(connections[database.name], database)
            if changes:
                failures.append(f"{database.name}: models differ from migrations: {', '.join(changes)}")
            else:
                print(f"{database.name}: models match migrations")
    if failures:
        raise MigrateError("; ".join(failures))


def create(message: MSG = "", db: DB = None, post_deploy: POST_DEPLOY = False) -> None:
    """Autogenerate a revision from the models; none is written when nothing changed."""
    if not message.strip():
        raise MigrateError(
            f'MSG is required: make migrate-create MSG="Add user profile fields" [DB={"|".join(DATABASES)}]'
        )
    scripts = load_scripts()
    databases = selected_databases(db)
    with database_connections(databases) as connections:
        states = read_known_states(connections, databases, scripts)
        require_one_head(scripts)
        refuse_pending(databases, states)
        config = alembic_config(db=db, connections=connections, autogenerate=True)
        config.attributes["post_deploy"] = post_deploy  # read by script.py.mako
        with redirect_stdout(io.StringIO()):  # the post-write hooks announce themselves
            script = command.revision(config, message=message, autogenerate=True)
    if not script:
        names = ", ".join(database.name for database in databases)
        raise MigrateError(f"no changes detected in {names}; no revision written")
    assert not isinstance(script, list)
    kind = "post-deploy revision " if post_deploy else ""
    print(f"created {kind}{project_path(script.path)} (touches: {', '.join(touched_databases(script.path))})")
    findings = lint_file(Path(script.path), db)
    for finding in findings:
        print(finding)
    if findings:
        print(f"review the {len(findings)} risky operation(s) above before upgrading: {LINT_ADVICE}")


def merge(message: MSG = "") -> None:
    """Write the revision that joins two branches' heads; it changes no schema."""
    heads = sorted(load_scripts().get_heads())
    if len(heads) < 2:
        raise MigrateError(f"nothing to merge: the migrations have one head ({', '.join(heads) or 'none'})")
    with redirect_stdout(io.StringIO()):  # the post-write hooks announce themselves
        script = command.merge(alembic_config(), "heads", message=message.strip() or f"Merge {' and '.join(heads)}")
    assert script is not None
    print(f"created {project_path(script.path)} (merges {', '.join(heads)})")


def sql(
    db: DB = None,
    out: Annotated[str | None, Option("OUT", "write <db>.sql files into this folder")] = None,
    from_: Annotated[str | None, Option("FROM", "start from this revision (default: an empty database)")] = None,
    post_deploy: POST_DEPLOY = False,
) -> None:
    """Offline SQL to stdout, or to OUT/<db>.sql, stopping before post-deploy revisions as migrate-upgrade does."""
    scripts = load_scripts()
    require_one_head(scripts)
    start = None if from_ == "base" else from_
    if start and start not in {script.revision for script in scripts.walk_revisions()}:
        raise MigrateError(
            f"FROM={start} is not a revision in migrations/versions; pass one full id from make migrate-history,"
            " or base"
        )
    planned = schema_state(scripts, (start,) if start else ())
    waiting = () if post_deploy else planned.post_deploy
    targets = upgrade_targets(scripts, planned, post_deploy=post_deploy)
    if len(targets) > 1:
        raise MigrateError(
            "the revisions before the post-deploy ones end in several branches, which offline SQL cannot follow;"
            " make migrate-sql POST_DEPLOY=1 writes the SQL up to head"
        )
    for database in selected_databases(db):
        for target in targets:
            _write_sql(database, out, f"{start}:{target}" if start else target)
        if waiting:
            print(
                f"-- {database.name}: {post_deploy_revisions(scripts, waiting)} not written: they are applied once the"
                " new code serves everywhere; make migrate-sql POST_DEPLOY=1 writes them"
            )


def _write_sql(database: Database, out: str | None, revisions: str) -> None:
    try:
        command.upgrade(alembic_config(db=database.name, out=out or ""), revisions, sql=True)
    except CommandError as error:
        if not get_settings().database_url(database.name).startswith("sqlite"):
            raise
        raise MigrateError(
            f"{database.name}: a revision alters a table, which SQLite does by rebuilding it from the live"
            f" database, so it has no offline SQL; set {database.url_setting.upper()} to PostgreSQL to review"
            " production SQL"
        ) from error


def lint(db: DB = None) -> None:
    """Check revision files for operations risky on a live PostgreSQL database; no database needed."""
    paths = revision_files()
    names = [database.name for database in selected_databases(db)]
    findings = lint_revisions(dict.fromkeys(paths, names))
    for finding in findings:
        print(finding)
    if not findings:
        print(f"no risky operations in {len(paths)} revision(s)")
        return
    print(f"{len(findings)} finding(s) in {len({finding.path for finding in findings})} revision(s)")
    raise MigrateError(f"risky operations not accepted: {LINT_ADVICE}")


COMMANDS: tuple[Callable[..., None], ...] = (
    create,
    merge,
    upgrade,
    post_deploy,
    rollback,
    status,
    history,
    check,
    sql,
    lint,
)
