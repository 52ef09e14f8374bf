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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from src.core.config import PROJECT_ROOT, project_path
from src.core.databases import DATABASES, get_database
from src.migrate.errors import MigrateError

VERSIONS = PROJECT_ROOT / "migrations" / "versions"
AUTOCOMMIT = "with op.get_context().autocommit_block():"
ALLOW_EXAMPLE = "# migrate-lint: allow RULE-ID -- reason"
LINT_ADVICE = f"make each safe as its line says, or accept it with {ALLOW_EXAMPLE} on its line"


@dataclass(frozen=True)
class Rule:
    why: str
    instead: str


RULES = {
    "drop-column": Rule(
        "instances still running the previous code select every column of the model and fail until replaced",
        "remove the field from the model and deploy, then drop the column in a later revision",
    ),
    "drop-table": Rule(
        "instances still running the previous code read or write it and fail, and its data is gone",
        "stop using the table and deploy, then drop it in a later revision",
    ),
    "probable-rename": Rule(
        "if this renames a column, its data is lost and code still running uses the old name",
        "rename with alter_column(..., new_column_name=...) (see rename-column), or expand/contract: add the new"
        " column, write both, backfill, switch reads, then drop the old one in a later revision",
    ),
    "rename-column": Rule(
        "instances still running the previous code use the old name and fail during a rolling deploy",
        "expand/contract: add the new column, write both, backfill, switch reads, then drop the old one"
        " in a later revision",
    ),
    "rename-table": Rule(
        "instances still running the previous code use the old name and fail during a rolling deploy",
        "expand/contract: create the new table, write both, backfill, switch reads, then drop the old one"
        " in a later revision",
    ),
    "not-null-without-default": Rule(
        "it fails once the table has rows, and instances still running the previous code insert without it",
        "add it with a server_default, or nullable, backfill in batches, then make it NOT NULL (see set-not-null)",
    ),
    "set-not-null": Rule(
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, blocking reads and writes",
        "create_check_constraint(..., 'col IS NOT NULL', postgresql_not_valid=True), VALIDATE CONSTRAINT in a later"
        " revision, then set NOT NULL (PostgreSQL 12+ trusts the check and skips the scan) and drop the check",
    ),
    "change-column-type": Rule(
        "most type changes rewrite the table and its indexes under an ACCESS EXCLUSIVE lock,"
        " and code still running may not handle the new type",
        "add a column of the new type, write both, backfill in batches, switch reads, then drop the old one"
        " (a longer varchar, or varchar to text, needs no rewrite)",
    ),
    "create-index-blocking": Rule(
        "building the index blocks writes to the table until it is done",
        f"create_index(..., postgresql_concurrently=True) inside {AUTOCOMMIT} (for a unique constraint,"
        " build its unique index that way, then ADD CONSTRAINT ... UNIQUE USING INDEX)",
    ),
    "concurrent-index-in-transaction": Rule(
        "PostgreSQL refuses CREATE or DROP INDEX CONCURRENTLY in a transaction block, so the revision fails",
        f"move it inside {AUTOCOMMIT}",
    ),
    "constraint-validates": Rule(
        "adding it scans every row under a lock that blocks writes (a check constraint blocks reads too;"
        " a foreign key also locks the referenced table)",
        "create it with postgresql_not_valid=True, then ALTER TABLE ... VALIDATE CONSTRAINT in a later revision,"
        " which does not block writes",
    ),
    "raw-sql": Rule(
        "the lint cannot read SQL, so its locks, table rewrites and long updates go unchecked",
        "review the locks it takes, the rows it rewrites and how long it runs, then accept it with a reason",
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
}


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


def lint_versions(db: str | None = None) -> list[Finding]:
    """Every revision file in migrations/versions."""
    return lint_paths(revision_files(), db)


def lint_paths(paths: Iterable[Path], db: str | None = None) -> list[Finding]:
    databases = _databases(db)
    return [finding for path in paths for finding in _lint_file(path, databases)]


def lint_file(path: Path, db: str | None = None) -> list[Finding]:
    """The unaccepted findings in one revision file, for every database or only DB."""
    return _lint_file(path, _databases(db))


def lint(db: str | None) -> None:
    """Print each unaccepted finding and a summary; fail when there is any."""
    paths = revision_files()
    findings = lint_paths(paths, db)
    for finding in findings:
        print(finding)
    if not findings:
        print(f"no risky operations in {len(paths)} revision(s)")
        return
    print(f"{len(findings)} finding(s) in {len({finding.path for finding in findings})} revision(s)")
    raise MigrateError(f"risky operations not accepted: {LINT_ADVICE}")


def _databases(db: str | None) -> list[str]:
    return [get_database(db).name] if db else list(DATABASES)


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
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    op_names = _op_names(tree)

    findings: list[Finding] = []
    allows, comment_findings = _allow_comments(source, path, functions)
    findings += [finding for finding in comment_findings if finding.database in ("", *databases)]
    for database in databases:
        function = functions.get(f"upgrade_{database}")
        if function is None:
            continue
        linter = _UpgradeLinter(op_names)
        linter.visit(function)
        for rule, call, what in linter.findings():
            spanned = range(call.lineno, (call.end_lineno or call.lineno) + 1)
            if any(rule in allows[line].rules and allows[line].has_reason for line in spanned if line in allows):
                continue
            findings.append(_finding(rule, path, line=call.lineno, database=database, what=what))
    return sorted(findings, key=lambda finding: (finding.line, finding.database, finding.rule))


def _finding(rule: str, path: Path, *, line: int, database: str, what: str) -> Finding:
    return Finding(rule, path, line, database, f"{what}; {RULES[rule].why}. Instead: {RULES[rule].instead}")


def _op_names(tree: ast.Module) -> set[str]:
    """``op`` and whatever name ``from alembic import op as ...`` gives it."""
    names = {"op"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "alembic":
            names |= {alias.asname or alias.name for alias in node.names if alias.name == "op"}
    return names


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


@dataclass
class _UpgradeLinter(ast.NodeVisitor):
    """Walks one upgrade function in source order, collecting (rule, call, what happens)."""

    op_names: set[str]
    created: set[str] = field(default_factory=set)
    batches: dict[str, str | None] = field(default_factory=dict)  # batch_op name -> its table
    binds: set[str] = field(default_factory=set)  # names given op.get_bind()
    autocommit_depth: int = 0
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
            if _is_call_of(expr, self.op_names, "batch_alter_table") and isinstance(item.optional_vars, ast.Name):
                assert isinstance(expr, ast.Call)
                self.batches[item.optional_vars.id] = _string(_argument(expr, 0, "table_name"))
            elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
                autocommit |= expr.func.attr == "autocommit_block"
            self.visit(expr)
        self.autocommit_depth += autocommit
        for statement in node.body:
            self.visit(statement)
        self.autocommit_depth -= autocommit
        self.batches = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        if _is_call_of(node.value, self.op_names, "get_bind"):
            self.binds |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if not isinstance(func, ast.Attribute):
            return
        receiver = func.value
        if func.attr in _EXECUTES and (
            _is_call_of(receiver, self.op_names, "get_bind")
            or (isinstance(receiver, ast.Name) and receiver.id in self.op_names | self.binds | set(self.batches))
        ):
            sql = next(
                (n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)), ""
            )
            shown = f": {sql[:60]}{'...' if len(sql) > 60 else ''}" if sql else ""
            self.found.append(("raw-sql", node, f"runs SQL the lint cannot read{shown}"))
            return
        if not isinstance(receiver, ast.Name) or func.attr not in _TABLE_ARGUMENT:
            return
        if receiver.id in self.op_names:
            table = _string(_argument(node, *_TABLE_ARGUMENT[func.attr]))
            self._check(_Operation(func.attr, node, table, in_batch=False))
        elif receiver.id in self.batches:
            self._check(_Operation(func.attr, node, self.batches[receiver.id], in_batch=True))

    def _check(self, operation: _Operation) -> None:
        table, call, argument = operation.table, operation.call, operation.argument
        new_table = table is not None and table in self.created
        name = table or "?"
        if operation.name == "create_table":
            if table is not None:
                self.created.add(table)
        elif operation.name in ("create_index", "drop_index"):
            concurrent = _is_constant(argument(None, "postgresql_concurrently"), True)
            index = _shown(argument(0, "index_name"))
            verb = "creates" if operation.name == "create_index" else "drops"
            if concurrent and not self.autocommit_depth:
                self.report("concurrent-index-in-transaction", call, f"{verb} index {index} concurrently")
            elif operation.name == "create_index" and not concurrent and not new_table:
                what = f"creates index {index} on {name} without postgresql_concurrently=True"
                self.report("create-index-blocking", call, what)
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
            column = f"{name}.{_shown(argument(1, 'column_name'))}"
            if _given(new := argument(None, "new_column_name")):
                self.report("rename-column", call, f"renames column {column} to {_shown(new)}")
            if _is_constant(argument(None, "nullable"), False):
                self.report("set-not-null", call, f"sets {column} NOT NULL")
            if _given(argument(None, "type_")):
                self.report("change-column-type", call, f"changes the type of {column}")
        elif operation.name == "create_unique_constraint":
            constraint = _shown(argument(0, "constraint_name"))
            what = f"creates unique constraint {constraint} on {name} under an ACCESS EXCLUSIVE lock: reads wait too"
            self.report("create-index-blocking", call, what)
        elif operation.name in ("create_foreign_key", "create_check_constraint") and not _is_constant(
            argument(None, "postgresql_not_valid"), True
        ):
            kind = "foreign key" if operation.name == "create_foreign_key" else "check constraint"
            what = f"adds {kind} {_shown(argument(0, 'constraint_name'))} on {name} without postgresql_not_valid=True"
            self.report("constraint-validates", call, what)

    def _check_add_column(self, call: ast.Call, table: str, column: ast.expr | None) -> None:
        if not (isinstance(column, ast.Call) and _shown(column.func).split(".")[-1] == "Column"):
            self.adds.setdefault(table, []).append(_shown(column))
            return
        self.adds.setdefault(table, []).append(_shown(_argument(column, 0, "name")))
        nullable = _argument(column, None, "nullable")
        not_null = _is_constant(nullable, False) or (
            nullable is None and _is_constant(_argument(column, None, "primary_key"), True)
        )
        generated = any(
            isinstance(arg, ast.Call) and _shown(arg.func).split(".")[-1] in ("Identity", "Computed")
            for arg in column.args
        )
        if not_null and not generated and not _given(_argument(column, None, "server_default")):
            what = f"adds NOT NULL column {table}.{_shown(_argument(column, 0, 'name'))} without a server_default"
            self.report("not-null-without-default", call, what)

    def report(self, rule: str, call: ast.Call, what: str) -> None:
        self.found.append((rule, call, what))
