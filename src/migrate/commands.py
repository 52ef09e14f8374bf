"""The migrate-* commands that bring databases forward or describe the revisions; each acts on every
named database, or on the one given as DB=."""

import io
import sys
from contextlib import redirect_stdout
from functools import partial
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from src.core.config import project_path
from src.core.databases import DATABASES, Database, get_database
from src.core.schema_versions import SchemaState, alembic_config, ancestry, schema_state, show_revisions
from src.migrate.errors import MigrateError, load_scripts
from src.migrate.lint import LINT_ADVICE, lint_file
from src.migrate.lock_retries import with_lock_retries
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


def upgrade(db: str | None, *, post_deploy: bool = False) -> None:
    """Bring every database (or DB=) to head, one database at a time, saying what each did; post-deploy
    revisions, and those after them, wait for ``post_deploy`` (make migrate-post-deploy)."""
    scripts = load_scripts()
    databases = selected(db)
    states = read_known_states(databases, scripts)
    require_one_head(scripts)
    plans = {name: state.pending if post_deploy else state.before_deploy for name, state in states.items()}
    refuse_risky_revisions(scripts, databases, plans)
    for database in databases:
        config = alembic_config(db=database.name)
        targets = upgrade_targets(scripts, states[database.name], post_deploy=post_deploy)
        with noting_what_was_done(databases, database, "upgraded"):
            for target in targets:
                with_lock_retries(database, partial(command.upgrade, config, target))
        # Read by env.py under the migration lock: what another process migrated meanwhile is not this run's doing.
        before = config.attributes.get("revisions_before", {}).get(database.name, states[database.name].current)
        after = read_state(database, scripts)
        if before != after.current:
            done = f"upgraded {show_revisions(before)} -> {show_revisions(after.current)}"
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


def revision_path(scripts: ScriptDirectory, revision: str) -> Path:
    script = scripts.get_revision(revision)
    assert script is not None
    return Path(script.path)


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
    findings = {
        database.name: [
            finding
            for revision in plans[database.name]
            for finding in lint_file(revision_path(scripts, revision), database.name)
        ]
        for database in databases
    }
    refused = [name for name, found in findings.items() if found and not DATABASES[name].url.startswith("sqlite")]
    for found in findings.values():
        for finding in found:
            print(finding, file=sys.stderr)
    if refused:
        raise MigrateError(
            f"{', '.join(refused)}: risky operations in revisions not applied yet (listed above); nothing was"
            f" migrated: {LINT_ADVICE}"
        )
    warned = [name for name, found in findings.items() if found]
    if warned:
        print(
            f"warning: {', '.join(warned)}: applying revisions with risky operations (listed above) to SQLite;"
            " on PostgreSQL make migrate-upgrade refuses them until each is made safe or accepted",
            file=sys.stderr,
        )


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


def create(message: str, db: str | None, *, post_deploy: bool = False) -> None:
    """Autogenerate one revision from the models (a post-deploy one with ``post_deploy``); refuse to write an empty
    one."""
    if not message.strip():
        raise MigrateError(
            f'MSG is required: make migrate-create MSG="Add user profile fields" [DB={"|".join(DATABASES)}]'
        )
    scripts = load_scripts()
    databases = selected(db)
    states = read_known_states(databases, scripts)
    require_one_head(scripts)
    refuse_pending(databases, states)
    config = alembic_config(db=db, autogenerate=True)
    config.attributes["post_deploy"] = post_deploy  # read by script.py.mako
    with redirect_stdout(io.StringIO()):  # the post-write hooks announce themselves
        script = command.revision(config, message=message, autogenerate=True)
    if not script:
        names = ", ".join(database.name for database in databases)
        raise MigrateError(f"no changes detected in {names}; no revision written")
    assert not isinstance(script, list)
    path = project_path(script.path)
    kind = "post-deploy revision " if post_deploy else ""
    print(f"created {kind}{path} (touches: {', '.join(touched_databases(script.path))})")
    findings = lint_file(Path(script.path), db)
    for finding in findings:
        print(finding)
    if findings:
        print(f"review the {len(findings)} risky operation(s) above before upgrading: {LINT_ADVICE}")


def sql(db: str | None, out: str | None, start: str | None, *, post_deploy: bool = False) -> None:
    """Write the offline SQL from START (default: empty) to head, per database, to OUT/<db>.sql or stdout; as
    make migrate-upgrade, it stops before the first post-deploy revision unless ``post_deploy``."""
    scripts = load_scripts()
    require_one_head(scripts)
    if start == "base":
        start = None
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
    for database in selected(db):
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
        if not database.url.startswith("sqlite"):
            raise
        raise MigrateError(
            f"{database.name}: a revision alters a table, which SQLite does by rebuilding it from the live"
            f" database, so it has no offline SQL; set {database.url_setting.upper()} to PostgreSQL to review"
            " production SQL"
        ) from error
