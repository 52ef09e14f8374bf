"""make migrate-lint: operations in revision files that are risky on a live PostgreSQL database.

Each revision file is read as a syntax tree, never imported or run. Only the
``upgrade_<db>()`` functions are checked (downgrades drop things by design),
and operations on a table created earlier in the same function are safe. A
finding is accepted by a comment on a line of its call:
``# migrate-lint: allow RULE-ID[, RULE-ID] -- reason``.
"""

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from src.core.config import PROJECT_ROOT, project_path
from src.core.databases import DATABASES, selected_databases
from src.migrate.failures import MigrateError

VERSIONS = PROJECT_ROOT / "migrations" / "versions"
AUTOCOMMIT = "with op.get_context().autocommit_block():"
AUTOCOMMITS = "autocommit_block"
ALLOW_EXAMPLE = "# migrate-lint: allow RULE-ID -- reason"
LINT_ADVICE = f"make each safe as its line says, or accept it with {ALLOW_EXAMPLE} on its line"


@dataclass(frozen=True)
class Rule:
    why: str
    instead: str


POST_DEPLOY = "a post-deploy revision (make migrate-create POST_DEPLOY=1)"

RULES = {
    "drop-column": Rule(
        "instances still running the previous code select every column of the model and fail until replaced",
        f"remove the field from the model and deploy, then drop the column in {POST_DEPLOY}",
    ),
    "drop-table": Rule(
        "instances still running the previous code read or write it and fail, and its data is gone",
        f"stop using the table and deploy, then drop it in {POST_DEPLOY}",
    ),
    "drop-constraint": Rule(
        "instances still running the previous code may count on it (a unique constraint is how they answer a"
        " duplicate), and dropping it locks the table (and a foreign key's referenced table) against reads and writes",
        f"stop relying on it and deploy, then drop it in {POST_DEPLOY}",
    ),
    "probable-rename": Rule(
        "if this renames a column, its data is lost and code still running uses the old name",
        "rename with alter_column(..., new_column_name=...) (see rename-column), or expand/contract: add the new"
        " column, write both, backfill, switch reads, then drop the old one in a later revision",
    ),
    "rename-column": Rule(
        "instances still running the previous code use the old name and fail during a rolling deploy",
        "expand/contract: add the new column, write both, backfill (op.backfill), switch reads, then drop the old"
        f" one in {POST_DEPLOY} (docs/migrations.md: Recipes for a live table)",
    ),
    "rename-table": Rule(
        "instances still running the previous code use the old name and fail during a rolling deploy",
        "expand/contract: create the new table, write both, backfill, switch reads, then drop the old one"
        f" in {POST_DEPLOY}",
    ),
    "not-null-without-default": Rule(
        "it fails once the table has rows, and instances still running the previous code insert without it",
        "add it with a server_default, or nullable, backfill with op.backfill, then make it NOT NULL in"
        f" {POST_DEPLOY} (see set-not-null)",
    ),
    "set-not-null": Rule(
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, blocking reads and writes",
        "create_check_constraint(..., 'col IS NOT NULL', postgresql_not_valid=True), VALIDATE CONSTRAINT in a later"
        " revision, then set NOT NULL (PostgreSQL 12+ trusts the check and skips the scan) and drop the check",
    ),
    "change-column-type": Rule(
        "most type changes rewrite the table and its indexes under an ACCESS EXCLUSIVE lock,"
        " and code still running may not handle the new type",
        "add a column of the new type, write both, backfill with op.backfill, switch reads, then drop the old one"
        " (a longer varchar, or varchar to text, needs no rewrite and is not reported when existing_type says so)",
    ),
    "volatile-default": Rule(
        "a server_default that differs per row (a volatile function) rewrites every row under an ACCESS EXCLUSIVE"
        " lock, blocking reads and writes until done",
        "add the column without it (or with a constant default), fill it with op.backfill, then set the"
        " server_default for new rows in a later revision",
    ),
    "add-generated-column": Rule(
        "an identity, serial or stored generated column is computed for every existing row: the table is"
        " rewritten under an ACCESS EXCLUSIVE lock, blocking reads and writes until done",
        "add a plain nullable column, fill it with op.backfill (and a trigger, or the code, for new rows), or"
        " accept the rewrite for a small table",
    ),
    "add-column-unique": Rule(
        "its unique index is built while ADD COLUMN holds the ACCESS EXCLUSIVE lock: no reads, no writes until done",
        f"add the column plain; then create_index(..., unique=True, postgresql_concurrently=True) inside {AUTOCOMMIT}"
        " in a revision of its own, and ADD CONSTRAINT ... UNIQUE USING INDEX",
    ),
    "add-column-foreign-key": Rule(
        "its foreign key is added with ADD COLUMN, taking a lock that blocks writes to the referenced table too",
        "add the column plain; then create_foreign_key(..., postgresql_not_valid=True), and VALIDATE CONSTRAINT in"
        " a later revision",
    ),
    "create-index-blocking": Rule(
        "building the index blocks writes to the table until it is done",
        f"create_index(..., postgresql_concurrently=True) inside {AUTOCOMMIT} (for a unique constraint,"
        " build its unique index that way, then ADD CONSTRAINT ... UNIQUE USING INDEX)",
    ),
    "drop-index-blocking": Rule(
        "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table: reads and writes queue behind it",
        f"drop_index(..., postgresql_concurrently=True) inside {AUTOCOMMIT}",
    ),
    "concurrent-index-in-transaction": Rule(
        "PostgreSQL refuses CREATE or DROP INDEX CONCURRENTLY in a transaction block, so the revision fails",
        f"move it inside {AUTOCOMMIT}",
    ),
    "concurrent-index-if-not-exists": Rule(
        "an INVALID index left by an interrupted build counts as existing: the revision is recorded, and the index"
        " is never used",
        "leave if_not_exists out: make migrate-upgrade drops a failed build's INVALID index and builds it again",
    ),
    "create-primary-key": Rule(
        "the primary key's unique index is built under an ACCESS EXCLUSIVE lock: no reads, no writes until done",
        f"create_index(..., unique=True, postgresql_concurrently=True) inside {AUTOCOMMIT}, then in a later"
        " revision ALTER TABLE ... ADD CONSTRAINT ... PRIMARY KEY USING INDEX (its columns NOT NULL first)",
    ),
    "exclusion-constraint": Rule(
        "an exclusion constraint builds its index under an ACCESS EXCLUSIVE lock and can be neither NOT VALID nor"
        " built concurrently",
        "create it with the table; on a live table, accept it only for a table small enough to build in"
        " milliseconds, or enforce the rule in the code",
    ),
    "constraint-validates": Rule(
        "adding it scans every row under a lock that blocks writes (a check constraint blocks reads too;"
        " a foreign key also locks the referenced table)",
        "create it with postgresql_not_valid=True, then ALTER TABLE ... VALIDATE CONSTRAINT in a later revision,"
        " which does not block writes",
    ),
    "validate-in-same-transaction": Rule(
        "the constraint was added NOT VALID in the same transaction, which still holds the lock of adding it:"
        " the validation scan blocks reads and writes as a plain ADD CONSTRAINT would",
        "validate it in a later revision (a post-deploy one when new rows must already satisfy it)",
    ),
    "prefer-jsonb": Rule(
        "json keeps the text as sent and has no equality operator: SELECT DISTINCT, UNION and GROUP BY over the"
        " table fail, and it cannot be indexed",
        "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), here and in the model (JSON on SQLite)",
    ),
    "batch-recreate": Rule(
        'batch_alter_table(..., recreate="always") copies the whole table into a new one on PostgreSQL too,'
        " under an ACCESS EXCLUSIVE lock",
        "leave recreate at its default (auto): plain ALTER TABLE on PostgreSQL, a rebuild only on SQLite",
    ),
    "operations-before-autocommit": Rule(
        "autocommit_block and op.backfill commit what the revision did before them; if it fails afterwards, a"
        " retry runs those operations again, and they fail (the column already exists)",
        "move the operations before it into a revision of their own, applied first",
    ),
    "raw-sql": Rule(
        "the lint cannot read SQL, so its locks, table rewrites and long updates go unchecked",
        "review the locks it takes, the rows it rewrites and how long it runs (op.backfill updates a table in"
        " batches), then accept it with a reason",
    ),
    "unchecked-code": Rule(
        "the lint reads only this file: what a function from elsewhere does to the database goes unchecked",
        "write the operations in this file, or review what it runs on a live database and accept it with a reason",
    ),
    "allow-without-reason": Rule(
        "it accepts nothing: an accepted risk needs its reason next to it",
        f"write {ALLOW_EXAMPLE}",
    ),
    "allow-unknown-rule": Rule(
        "it accepts nothing",
        "use the rule ids make migrate-lint printed for this line",
    ),
}
# In a post-deploy revision no instance runs the previous code any more: dropping what it used is the contract step.
SAFE_AFTER_DEPLOY = frozenset({"drop-column", "drop-table", "drop-constraint"})
# Findings about allow comments themselves cannot be accepted.
ACCEPTABLE = frozenset(RULES) - {"allow-without-reason", "allow-unknown-rule"}

_ALLOW_COMMENT = re.compile(r"#\s*migrate-lint:\s*(?P<body>.*)")
_ALLOW_BODY = re.compile(r"allow\s+(?P<rules>.*?)(?:\s+--(?:\s+(?P<reason>.*))?)?")
_EXECUTES = ("execute", "exec_driver_sql")
# Where each operation takes its table: (position in op.X(...), keyword). batch_op.X(...) has no such argument.
_TABLE_ARGUMENT = {
    "create_table": (0, "table_name"),
    "drop_table": (0, "table_name"),
    "rename_table": (0, "old_table_name"),
    "add_column": (0, "table_name"),
    "drop_column": (0, "table_name"),
    "alter_column": (0, "table_name"),
    "create_index": (1, "table_name"),
    "drop_index": (1, "table_name"),
    "create_unique_constraint": (1, "table_name"),
    "create_foreign_key": (1, "source_table"),
    "create_check_constraint": (1, "table_name"),
    "create_primary_key": (1, "table_name"),
    "create_exclude_constraint": (1, "table_name"),
    "drop_constraint": (1, "table_name"),
    "backfill": (0, "table_name"),
}
# Modules whose functions build arguments (types, columns, SQL text) and touch no database by themselves.
_TRUSTED_MODULES = ("alembic", "sqlalchemy", "sqlmodel", "typing", "collections", "datetime", "decimal", "enum", "uuid")
_VOLATILE_FUNCTION = re.compile(
    r"\b(gen_random_uuid|uuid_generate_v1(?:mc)?|uuid_generate_v4|uuidv[47]|random|clock_timestamp|timeofday"
    r"|nextval|txid_current|pg_current_xact_id|gen_random_bytes)\s*\(",
    re.IGNORECASE,
)
# op methods that are no operation on the database.
_NOT_OPERATIONS = frozenset({"f", "get_bind", "get_context", "batch_alter_table", "inline_literal", "backfill"})
# Builtins that run code the lint cannot see.
_RUNS_CODE = frozenset({"exec", "eval", "__import__"})
_VALIDATE_CONSTRAINT = re.compile(r"\bVALIDATE\s+CONSTRAINT\s+\"?(\w+)", re.IGNORECASE)
_TEXT_TYPES = {"Text", "TEXT", "UnicodeText"}
_VARCHAR_TYPES = {"String", "VARCHAR", "Unicode", "NVARCHAR"}
_NUMERIC_TYPES = {"Numeric", "NUMERIC", "DECIMAL"}


@dataclass(frozen=True)
class Finding:
    rule: str
    path: Path
    line: int
    database: str
    message: str  # what, why, and the safe recipe, on one line

    def __str__(self) -> str:
        where = f"{project_path(self.path)}:{self.line}:"
        database = f" {self.database}:" if self.database else ""
        return f"{where}{database} {self.rule}: {self.message}"


def revision_files() -> list[Path]:
    return sorted(VERSIONS.glob("*.py"))


def lint_revisions(revisions: Mapping[Path, Iterable[str]]) -> list[Finding]:
    """The unaccepted findings in each revision file, for the databases given with it; each file is read once."""
    return [finding for path, databases in revisions.items() for finding in _lint_file(path, list(databases))]


def lint_file(path: Path, db: str | None = None) -> list[Finding]:
    """The unaccepted findings in one revision file, for every database or only DB."""
    return _lint_file(path, [database.name for database in selected_databases(db)])


@dataclass(frozen=True)
class _Allow:
    rules: frozenset[str]
    has_reason: bool


def _lint_file(path: Path, databases: list[str]) -> list[Finding]:
    source = path.read_text()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise MigrateError(f"{project_path(path)}:{error.lineno}: cannot read the revision: {error.msg}") from None
    _TrustedAliases(tree).visit(tree)
    functions = _functions(tree)
    op_names = _op_names(tree)
    post_deploy = _is_post_deploy(tree)

    findings: list[Finding] = []
    allows, comment_findings = _allow_comments(source, path, functions)
    findings += [finding for finding in comment_findings if finding.database in ("", *databases)]
    for database in databases:
        # The dispatcher runs for every database; it is the template's two lines unless someone added to it.
        steps = [functions[name] for name in ("upgrade", f"upgrade_{database}") if name in functions]
        if not steps:
            continue
        linter = _UpgradeLinter(set(op_names), helpers=functions, untrusted=_untrusted_imports(tree))
        for step in steps:
            linter.visit(step)
        for rule, call, what in linter.findings():
            if post_deploy and rule in SAFE_AFTER_DEPLOY:
                continue
            spanned = range(call.lineno, (call.end_lineno or call.lineno) + 1)
            if any(rule in allows[line].rules and allows[line].has_reason for line in spanned if line in allows):
                continue
            findings.append(_finding(rule, path, line=call.lineno, database=database, what=what))
    return sorted(findings, key=lambda finding: (finding.line, finding.database, finding.rule))


def _finding(rule: str, path: Path, *, line: int, database: str, what: str) -> Finding:
    return Finding(rule, path, line, database, f"{what}; {RULES[rule].why}. Instead: {RULES[rule].instead}")


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """The file's functions by name, with the names given to them (``upgrade_core = _add_nickname``)."""
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in functions:
            functions |= {
                target.id: functions[node.value.id] for target in node.targets if isinstance(target, ast.Name)
            }
    return functions


class _TrustedAliases(ast.NodeTransformer):
    """Name what is imported from SQLAlchemy or Alembic under another name by its own name (``C`` -> ``Column``)."""

    def __init__(self, tree: ast.Module) -> None:
        self.aliases = {
            alias.asname: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in _TRUSTED_MODULES
            for alias in node.names
            if alias.asname and alias.name != "op"
        }

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.aliases.get(node.id, node.id)
        return node


def _op_names(tree: ast.Module) -> set[str]:
    """``op`` and whatever name ``from alembic import op as ...`` gives it."""
    names = {"op"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "alembic":
            names |= {alias.asname or alias.name for alias in node.names if alias.name == "op"}
    return names


def _is_post_deploy(tree: ast.Module) -> bool:
    """``post_deploy = True`` at the top level of the revision file."""
    return any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(isinstance(target, ast.Name) and target.id == "post_deploy" for target in _targets(node))
        and _is_constant(node.value, True)
        for node in tree.body
    )


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def _untrusted_imports(tree: ast.Module) -> dict[str, str]:
    """Names the file imports from modules other than Alembic, SQLAlchemy and the standard types: name -> module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0]: alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {alias.asname or alias.name: node.module for alias in node.names}
    return {name: module for name, module in names.items() if module.split(".")[0] not in _TRUSTED_MODULES}


def _allow_comments(
    source: str, path: Path, functions: dict[str, ast.FunctionDef]
) -> tuple[dict[int, _Allow], list[Finding]]:
    """The allow comments by line, and the findings about malformed ones."""
    allows: dict[int, _Allow] = {}
    findings: list[Finding] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        comment = _ALLOW_COMMENT.fullmatch(token.string) if token.type == tokenize.COMMENT else None
        if comment is None:
            continue
        line = token.start[0]
        database = _database_at(line, functions)
        body = _ALLOW_BODY.fullmatch(comment["body"].strip())
        if body is None:
            what = f"the comment {token.string.strip()!r} allows no rule"
            findings.append(_finding("allow-unknown-rule", path, line=line, database=database, what=what))
            continue
        rules = [rule.strip() for rule in body["rules"].split(",")]
        has_reason = bool(body["reason"] and body["reason"].strip())
        if not has_reason:
            what = f"the comment {token.string.strip()!r} gives no reason after ' -- '"
            findings.append(_finding("allow-without-reason", path, line=line, database=database, what=what))
        for rule in rules:
            if rule not in ACCEPTABLE:
                what = f"the comment allows {rule!r}, which is no rule it can accept (the reason goes after ' -- ')"
                findings.append(_finding("allow-unknown-rule", path, line=line, database=database, what=what))
        allows[line] = _Allow(frozenset(rules), has_reason)
    return allows, findings


def _database_at(line: int, functions: dict[str, ast.FunctionDef]) -> str:
    """The database whose upgrade or downgrade function holds the line, or "" outside them."""
    for name in DATABASES:
        for step in ("upgrade", "downgrade"):
            function = functions.get(f"{step}_{name}")
            if function is not None and function.lineno <= line <= (function.end_lineno or function.lineno):
                return name
    return ""


def _argument(call: ast.Call, position: int | None, keyword: str) -> ast.expr | None:
    """An argument by keyword, or by position (None: keyword only)."""
    for argument in call.keywords:
        if argument.arg == keyword:
            return argument.value
    positional = [argument for argument in call.args if not isinstance(argument, ast.Starred)]
    return positional[position] if position is not None and position < len(positional) else None


def _string(expr: ast.expr | None) -> str | None:
    """A literal name: ``"users"``, or ``op.f("ix_users_email")``."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "f" and expr.args:
        return _string(expr.args[0])
    return None


def _shown(expr: ast.expr | None) -> str:
    name = _string(expr)
    return name if name is not None else "?" if expr is None else ast.unparse(expr)


def _is_constant(expr: ast.expr | None, value: object) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is value


def _given(expr: ast.expr | None) -> bool:
    """An argument that is passed and is not None."""
    return expr is not None and not _is_constant(expr, None)


def _is_call_of(expr: ast.expr, names: set[str], method: str) -> bool:
    """``name.method(...)`` for one of the names."""
    return (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr == method
        and isinstance(expr.func.value, ast.Name)
        and expr.func.value.id in names
    )


@dataclass(frozen=True)
class _Operation:
    """One ``op.X(...)`` or ``batch_op.X(...)`` call with the table it acts on (None when not a literal)."""

    name: str
    call: ast.Call
    table: str | None
    in_batch: bool

    def argument(self, position: int | None, keyword: str) -> ast.expr | None:
        """By its position in ``op.X(...)``; ``batch_op.X(...)`` lacks the table argument."""
        if position is not None and self.in_batch and position > _TABLE_ARGUMENT[self.name][0]:
            position -= 1
        return _argument(self.call, position, keyword)


def _last_name(expr: ast.expr) -> str:
    """``sa.types.String`` -> ``String``; the called name of ``sa.String(10)``."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    return _shown(expr).split(".")[-1]


def _calls(expr: ast.expr | None, names: set[str]) -> list[ast.Call]:
    """The calls of any of these names anywhere in an expression (``sa.ForeignKey(...)`` for "ForeignKey")."""
    if expr is None:
        return []
    return [node for node in ast.walk(expr) if isinstance(node, ast.Call) and _last_name(node) in names]


def _text_type(expr: ast.expr | None) -> tuple[str, int | None] | None:
    """('varchar', length) or ('text', None) for a string column type; None for any other or unknown type."""
    if not isinstance(expr, ast.Call | ast.Attribute | ast.Name):
        return None
    name = _last_name(expr)
    if name in _TEXT_TYPES:
        return ("text", None)
    if name not in _VARCHAR_TYPES:
        return None
    length = _argument(expr, 0, "length") if isinstance(expr, ast.Call) else None
    if length is None:
        return ("text", None)  # a varchar without a length is as wide as text
    return ("varchar", length.value) if isinstance(length, ast.Constant) and isinstance(length.value, int) else None


def _widens_text(new: ast.expr | None, existing: ast.expr | None) -> bool:
    """varchar(n) to a longer varchar or to text, text to text: PostgreSQL changes no row."""
    new_type, old_type = _text_type(new), _text_type(existing)
    if new_type is None or old_type is None:
        return False
    new_length, old_length = new_type[1], old_type[1]
    return new_length is None or (old_length is not None and new_length >= old_length)


def _numeric_type(expr: ast.expr | None) -> tuple[int | None, int | None] | None:
    """(precision, scale) of ``sa.Numeric(10, 2)`` written with literal numbers; None for any other type."""
    if not isinstance(expr, ast.Call) or _last_name(expr) not in _NUMERIC_TYPES:
        return None
    numbers: list[int | None] = []
    for part in (_argument(expr, 0, "precision"), _argument(expr, 1, "scale")):
        value = part.value if isinstance(part, ast.Constant) else part
        if value is not None and not isinstance(value, int):
            return None
        numbers.append(value)
    return numbers[0], numbers[1]


def _widens(new: ast.expr | None, existing: ast.expr | None) -> bool:
    """A type change PostgreSQL makes without touching a row: a longer varchar, varchar to text, more digits."""
    if _widens_text(new, existing):
        return True
    new_numeric, old_numeric = _numeric_type(new), _numeric_type(existing)
    if new_numeric is None or old_numeric is None or new_numeric[1] != old_numeric[1]:
        return False
    new_precision, old_precision = new_numeric[0], old_numeric[0]
    return new_precision is not None and old_precision is not None and new_precision >= old_precision


def _is_json(expr: ast.expr | None) -> bool:
    """``sa.JSON()`` (or the class itself); ``sa.JSON().with_variant(JSONB(), "postgresql")`` is not."""
    return expr is not None and _last_name(expr) == "JSON"


def _volatile_default(expr: ast.expr | None) -> str | None:
    """The volatile function a server_default calls (``sa.text("gen_random_uuid()")``, ``sa.func.random()``)."""
    if not isinstance(expr, ast.Call):
        return None  # a plain string is a constant
    texts = [
        re.sub(r"'[^']*'", "''", node.value)  # what a quoted literal holds is no call
        for node in ast.walk(expr)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    called = [_last_name(node) + "(" for node in ast.walk(expr) if isinstance(node, ast.Call)]
    found = _VOLATILE_FUNCTION.search(" ".join(texts + called))
    return found.group(1) if found else None


def _root_name(expr: ast.expr) -> str | None:
    """``src`` of ``src.migrate.helpers``: the name an attribute chain starts from."""
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _sql_of(call: ast.Call) -> str:
    return next((n.value for n in ast.walk(call) if isinstance(n, ast.Constant) and isinstance(n.value, str)), "")


@dataclass
class _UpgradeLinter(ast.NodeVisitor):
    """Walks one upgrade function in source order, and the file's own functions it calls, collecting
    (rule, call, what happens)."""

    op_names: set[str]
    helpers: dict[str, ast.FunctionDef]  # the file's functions: followed where called
    untrusted: dict[str, str]  # imported names whose code the lint cannot read -> their module
    created: set[str] = field(default_factory=set)
    batches: dict[str, str | None] = field(default_factory=dict)  # batch_op name -> its table
    binds: set[str] = field(default_factory=set)  # names given op.get_bind() or the context's connection
    contexts: set[str] = field(default_factory=set)  # names given op.get_context()
    values: dict[str, ast.expr] = field(default_factory=dict)  # what a name was last given, as written
    autocommit_depth: int = 0
    following: set[str] = field(default_factory=set)  # helpers being walked: a recursive one is walked once
    # Operations of the current transaction, and constraints it added NOT VALID.
    in_transaction: list[ast.Call] = field(default_factory=list)
    not_valid: set[str] = field(default_factory=set)
    found: list[tuple[str, ast.Call, str]] = field(default_factory=list)
    drops: list[tuple[str, str, ast.Call]] = field(default_factory=list)  # (table, column, call)
    adds: dict[str, list[str]] = field(default_factory=dict)  # table -> columns added

    def findings(self) -> list[tuple[str, ast.Call, str]]:
        renames = []
        for table, column, call in self.drops:
            added = [name for name in self.adds.get(table, []) if name != column]
            if added:
                what = f"drops {table}.{column} and adds {', '.join(added)} to {table} in the same revision"
                renames.append(("probable-rename", call, what))
        return self.found + renames

    def visit_With(self, node: ast.With) -> None:
        saved = dict(self.batches)
        autocommit = False
        for item in node.items:
            expr = item.context_expr
            if _is_call_of(expr, self.op_names, "batch_alter_table"):
                assert isinstance(expr, ast.Call)
                self._check_batch(expr, item.optional_vars)
            elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == AUTOCOMMITS:
                autocommit = True
                self._commit(expr, "autocommit_block")
            elif self._is_connection(expr) and isinstance(item.optional_vars, ast.Name):
                self.binds.add(item.optional_vars.id)
            self.visit(expr)
        self.autocommit_depth += autocommit
        for statement in node.body:
            self.visit(statement)
        self.autocommit_depth -= autocommit
        self.batches = saved

    def _check_batch(self, call: ast.Call, name: ast.expr | None) -> None:
        table = _string(_argument(call, 0, "table_name"))
        if isinstance(name, ast.Name):
            self.batches[name.id] = table
        recreate = _argument(call, None, "recreate")
        if isinstance(recreate, ast.Constant) and recreate.value == "always" and table not in self.created:
            self.report("batch-recreate", call, f'rebuilds table {table or "?"} (recreate="always")')

    def _commit(self, call: ast.Call, what: str) -> None:
        """``what`` commits the transaction so far: earlier operations are done before the revision is."""
        if self.in_transaction and not self.autocommit_depth:
            lines = ", ".join(str(earlier.lineno) for earlier in self.in_transaction)
            self.report("operations-before-autocommit", call, f"{what} commits the operations on line(s) {lines}")
        self.in_transaction.clear()
        self.not_valid.clear()

    def _is_context(self, expr: ast.expr) -> bool:
        """``op.get_context()``, ``op`` itself (its ``impl``), or a name given the context."""
        return _is_call_of(expr, self.op_names, "get_context") or (
            isinstance(expr, ast.Name) and expr.id in self.contexts | self.op_names
        )

    def _is_connection(self, expr: ast.expr) -> bool:
        """``op.get_bind()``, the context's ``connection``, ``bind`` or ``impl``, or a name given one of them."""
        if _is_call_of(expr, self.op_names, "get_bind"):
            return True
        if isinstance(expr, ast.Attribute) and expr.attr in ("connection", "bind", "impl"):
            return self._is_context(expr.value)
        return isinstance(expr, ast.Name) and expr.id in self.binds

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assign([target for target in node.targets if isinstance(target, ast.Name)], node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name) and node.value is not None:
            self._assign([node.target], node.value)
        self.generic_visit(node)

    def _assign(self, targets: list[ast.Name], value: ast.expr) -> None:
        names = {target.id for target in targets}
        self.values |= dict.fromkeys(names, value)
        if self._is_connection(value):
            self.binds |= names
        elif _is_call_of(value, self.op_names, "get_context"):
            self.contexts |= names
        elif isinstance(value, ast.Name) and value.id in self.op_names:
            self.op_names |= names
        elif isinstance(value, ast.Name) and value.id in self.batches:
            self.batches |= dict.fromkeys(names, self.batches[value.id])

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Name):
            self._call_function(node, func.id)
            return
        if not isinstance(func, ast.Attribute):
            return
        receiver, root = func.value, _root_name(func.value)
        if func.attr in _EXECUTES and (
            self._is_connection(receiver)
            or (isinstance(receiver, ast.Name) and receiver.id in self.op_names | set(self.batches))
        ):
            self._raw_sql(node)
        elif root in self.untrusted:
            self.report("unchecked-code", node, f"calls {_shown(func)}() from {self.untrusted[root]}")
        elif isinstance(receiver, ast.Name) and receiver.id in self.op_names | set(self.batches):
            self._operation(node, func.attr, receiver.id)
        else:
            self._passes_the_connection(node)

    def _operation(self, node: ast.Call, name: str, receiver: str) -> None:
        """``op.X(...)`` or ``batch_op.X(...)``."""
        if name == "invoke":
            self.report("unchecked-code", node, "runs an operation object through op.invoke()")
        elif name in _TABLE_ARGUMENT and receiver in self.op_names:
            table = _string(_argument(node, *_TABLE_ARGUMENT[name]))
            self._check(_Operation(name, node, table, in_batch=False))
        elif name in _TABLE_ARGUMENT:
            self._check(_Operation(name, node, self.batches[receiver], in_batch=True))
        elif name not in _NOT_OPERATIONS and not self.autocommit_depth:
            self.in_transaction.append(node)

    def _passes_the_connection(self, node: ast.Call) -> None:
        """A call given the migration's connection (``Session(bind=op.get_bind())``, ``table.drop(bind)``)."""
        arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
        if _last_name(node) != "inspect" and any(self._is_connection(argument) for argument in arguments):
            self.report("unchecked-code", node, f"passes the migration's connection to {_shown(node.func)}()")

    def _call_function(self, node: ast.Call, name: str) -> None:
        looked_up = name == "getattr" and node.args and _root_name(node.args[0]) in self.op_names | set(self.batches)
        if name in self.untrusted:
            self.report("unchecked-code", node, f"calls {name}() from {self.untrusted[name]}")
        elif name in _RUNS_CODE or looked_up:
            self.report("unchecked-code", node, f"calls {name}(), which runs what the lint cannot read")
        elif name in self.helpers and name not in self.following:
            self._follow(node, self.helpers[name])
        else:
            self._passes_the_connection(node)

    def _follow(self, node: ast.Call, helper: ast.FunctionDef) -> None:
        """Walk a function of the file where it is called, its parameters taking what the call passes."""
        saved = (set(self.op_names), dict(self.batches), set(self.binds), set(self.contexts))
        for parameter, argument in zip(helper.args.args, node.args, strict=False):
            self._assign([ast.Name(id=parameter.arg)], argument)
        self.following.add(helper.name)
        for statement in helper.body:
            self.visit(statement)
        self.following.discard(helper.name)
        self.op_names, self.batches, self.binds, self.contexts = saved

    def _raw_sql(self, call: ast.Call) -> None:
        sql = _sql_of(call)
        shown = f": {sql[:60]}{'...' if len(sql) > 60 else ''}" if sql else ""
        self.report("raw-sql", call, f"runs SQL the lint cannot read{shown}")
        validated = _VALIDATE_CONSTRAINT.search(sql)
        if validated and validated.group(1) in self.not_valid and not self.autocommit_depth:
            what = f"validates {validated.group(1)}, added NOT VALID earlier in the same transaction"
            self.report("validate-in-same-transaction", call, what)
        if not self.autocommit_depth:
            self.in_transaction.append(call)

    def _check(self, operation: _Operation) -> None:
        table, call, argument = operation.table, operation.call, operation.argument
        new_table = table is not None and table in self.created
        name = table or "?"
        if operation.name == "backfill":
            self._commit(call, "op.backfill")
            return
        if not self.autocommit_depth:
            self.in_transaction.append(call)
        if operation.name == "create_table":
            # IF NOT EXISTS may create nothing, and another schema's table is not this one.
            shadows = _given(argument(None, "schema")) or _is_constant(argument(None, "if_not_exists"), True)
            if table is not None and not shadows:
                self.created.add(table)
        elif operation.name in ("create_index", "drop_index"):
            self._check_index(operation, new_table)
        elif new_table:
            renamed = _string(argument(1, "new_table_name")) if operation.name == "rename_table" else None
            if renamed is not None:
                self.created.add(renamed)
        elif operation.name == "drop_table":
            self.report("drop-table", call, f"drops table {name}")
        elif operation.name == "rename_table":
            self.report("rename-table", call, f"renames table {name} to {_shown(argument(1, 'new_table_name'))}")
        elif operation.name == "drop_column":
            column = _shown(argument(1, "column_name"))
            self.report("drop-column", call, f"drops column {name}.{column}")
            self.drops.append((name, column, call))
        elif operation.name == "add_column":
            self._check_add_column(call, name, argument(1, "column"))
        elif operation.name == "alter_column":
            self._check_alter_column(operation, f"{name}.{_shown(argument(1, 'column_name'))}")
        elif operation.name == "create_unique_constraint":
            constraint = _shown(argument(0, "constraint_name"))
            what = f"creates unique constraint {constraint} on {name} under an ACCESS EXCLUSIVE lock: reads wait too"
            self.report("create-index-blocking", call, what)
        elif operation.name in ("create_foreign_key", "create_check_constraint"):
            self._check_constraint(operation, name)
        elif operation.name == "create_primary_key":
            self.report("create-primary-key", call, f"adds primary key {_shown(argument(0, 'constraint_name'))}")
        elif operation.name == "create_exclude_constraint":
            constraint = _shown(argument(0, "constraint_name"))
            self.report("exclusion-constraint", call, f"adds exclusion constraint {constraint} on {name}")
        elif operation.name == "drop_constraint":
            constraint = _shown(argument(0, "constraint_name"))
            self.report("drop-constraint", call, f"drops constraint {constraint} of {name}")

    def _check_index(self, operation: _Operation, new_table: bool) -> None:
        call, argument = operation.call, operation.argument
        concurrent = _is_constant(argument(None, "postgresql_concurrently"), True)
        index = _shown(argument(0, "index_name"))
        verb = "creates" if operation.name == "create_index" else "drops"
        if concurrent and operation.name == "create_index" and _is_constant(argument(None, "if_not_exists"), True):
            self.report("concurrent-index-if-not-exists", call, f"creates index {index} concurrently if not exists")
        if concurrent and not self.autocommit_depth:
            self.report("concurrent-index-in-transaction", call, f"{verb} index {index} concurrently")
        elif not concurrent and not new_table:
            rule = "create-index-blocking" if operation.name == "create_index" else "drop-index-blocking"
            what = f"{verb} index {index} on {operation.table or '?'} without postgresql_concurrently=True"
            self.report(rule, call, what)

    def _check_alter_column(self, operation: _Operation, column: str) -> None:
        call, argument = operation.call, operation.argument
        if _given(new := argument(None, "new_column_name")):
            self.report("rename-column", call, f"renames column {column} to {_shown(new)}")
        if _is_constant(argument(None, "nullable"), False):
            self.report("set-not-null", call, f"sets {column} NOT NULL")
        new_type = argument(None, "type_")
        if _given(new_type) and not _widens(new_type, argument(None, "existing_type")):
            self.report("change-column-type", call, f"changes the type of {column}")
        if _is_json(new_type):
            self.report("prefer-jsonb", call, f"makes {column} json")

    def _check_constraint(self, operation: _Operation, table: str) -> None:
        call, argument = operation.call, operation.argument
        constraint = _shown(argument(0, "constraint_name"))
        if _is_constant(argument(None, "postgresql_not_valid"), True):
            # The naming convention names a check ck_<table>_<name>.
            self.not_valid |= {constraint, f"ck_{table}_{constraint}"}
            return
        kind = "foreign key" if operation.name == "create_foreign_key" else "check constraint"
        what = f"adds {kind} {constraint} on {table} without postgresql_not_valid=True"
        self.report("constraint-validates", call, what)

    def _check_add_column(self, call: ast.Call, table: str, column: ast.expr | None) -> None:
        if isinstance(column, ast.Name) and column.id in self.values:
            column = self.values[column.id]
        if not (isinstance(column, ast.Call) and _last_name(column) == "Column"):
            self.adds.setdefault(table, []).append(_shown(column))
            return
        name = f"{table}.{_shown(_argument(column, 0, 'name'))}"
        self.adds.setdefault(table, []).append(_shown(_argument(column, 0, "name")))
        column_type = _argument(column, 1, "type_")
        nullable = _argument(column, None, "nullable")
        not_null = _is_constant(nullable, False) or (
            nullable is None and _is_constant(_argument(column, None, "primary_key"), True)
        )
        generated = _calls(column, {"Identity", "Computed"}) or (
            column_type is not None and _last_name(column_type).upper().endswith("SERIAL")
        )
        server_default = _argument(column, None, "server_default")
        if not_null and not generated and not _given(server_default):
            self.report("not-null-without-default", call, f"adds NOT NULL column {name} without a server_default")
        if generated:
            self.report("add-generated-column", call, f"adds {name}, computed for every existing row")
        if volatile := _volatile_default(server_default):
            self.report("volatile-default", call, f"adds {name} with server_default {volatile}()")
        if _is_constant(_argument(column, None, "unique"), True):
            self.report("add-column-unique", call, f"adds {name} with unique=True")
        if _calls(column, {"ForeignKey"}):
            self.report("add-column-foreign-key", call, f"adds {name} with a ForeignKey")
        if _calls(column, {"CheckConstraint"}):
            self.report("constraint-validates", call, f"adds {name} with a check constraint")
        if _is_constant(_argument(column, None, "primary_key"), True):
            what = f"adds {name} as a primary key (an integer one is a serial too: every row is written)"
            self.report("create-primary-key", call, what)
        if _is_constant(_argument(column, None, "index"), True):
            what = f"adds {name} with index=True: its index is built without postgresql_concurrently=True"
            self.report("create-index-blocking", call, what)
        if _is_json(column_type):
            self.report("prefer-jsonb", call, f"adds {name} as json")

    def report(self, rule: str, call: ast.Call, what: str) -> None:
        self.found.append((rule, call, what))
