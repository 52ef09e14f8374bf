"""The documentation against the project: its links lead somewhere, its make commands exist, the README stays short."""

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from src.core.config import PROJECT_ROOT
from src.migrate import __main__ as migrate_cli

README = PROJECT_ROOT / "README.md"
README_MAX_LINES = 200
DOCUMENTS = [README, *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]
MAKEFILE = (PROJECT_ROOT / "Makefile").read_text()

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w-]*)")
# A code span may wrap onto the next line, never past a blank one.
CODE_SPAN = re.compile(r"(`+)(?:(?!\n[ \t]*\n)[\s\S])*?(?<!`)\1(?!`)")
INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)", re.MULTILINE)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

MAKEFILE_READS = (
    set(re.findall(r"\$[({]([A-Za-z_]\w*)[)}]", MAKEFILE))
    | set(re.findall(r"^\s*ifn?def\s+([A-Za-z_]\w*)", MAKEFILE, flags=re.MULTILINE))
    | set(re.findall(r"\$\((?:origin|value|flavor)\s+([A-Za-z_]\w*)\)", MAKEFILE))
)
ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=")
SHELL_OPERATOR = re.compile(r"^[();<>|&]+$")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source.relative_to(PROJECT_ROOT)}:{self.line}"


@dataclass(frozen=True)
class MakeCommand:
    source: Path
    line: int
    words: tuple[str, ...] | None

    def __str__(self) -> str:
        return f"{self.source.relative_to(PROJECT_ROOT)}:{self.line}"


def split_fences(text: str) -> tuple[str, list[tuple[str, int, str]]]:
    """The prose, with fenced lines blanked so that line numbers hold, and each fenced line as (info, number, line)."""
    prose: list[str] = []
    fenced: list[tuple[str, int, str]] = []
    fence, info = "", ""
    for number, line in enumerate(text.split("\n"), start=1):
        opening = FENCE.match(line)
        if not fence and opening:
            fence, info = opening.group(1), opening.group(2)
            prose.append("")
        elif fence and line.strip().startswith(fence) and not line.strip().lstrip(fence[0]):
            fence = ""
            prose.append("")
        elif fence:
            fenced.append((info, number, line))
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), fenced


def without_code_spans(prose: str) -> str:
    return CODE_SPAN.sub(lambda span: "\n" * span.group(0).count("\n"), prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, each space a '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(document: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    prose, _ = split_fences(document.read_text())
    for line in prose.split("\n"):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            # A repeated heading gets -1, -2, ... as on GitHub.
            found.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return found


def links(document: Path) -> list[Link]:
    prose = without_code_spans(split_fences(document.read_text())[0])
    found = [*INLINE_LINK.finditer(prose), *REFERENCE_LINK.finditer(prose)]
    return [Link(document, prose.count("\n", 0, match.start()) + 1, match.group(1)) for match in found]


@cache
def make_help() -> dict[str, str]:
    """Each target ``make help`` lists, with its line: the migrate-* targets included, and the variables each takes."""
    # As a user's own call, not a sub-make of `make test`; the running virtualenv, so nothing is installed.
    env = {name: value for name, value in os.environ.items() if name not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    listed = subprocess.run(
        ["make", "--no-print-directory", f"VENV={sys.prefix}", "help"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(re.findall(r"^  ([a-z][a-z-]*)\s+(.*)$", listed, flags=re.MULTILINE))


def make_invocations(shell: str) -> list[tuple[str, ...]]:
    """The arguments of each ``make`` that a shell line runs; comments and quoted text are not commands."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if SHELL_OPERATOR.match(token):
            commands.append([])
        else:
            commands[-1].append(token)
    invocations = []
    for words in commands:
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words[:1] == ["make"]:
            invocations.append(tuple(words[1:]))
    return invocations


def make_commands(document: Path) -> list[MakeCommand]:
    """The make commands of bash blocks, and of transcripts' ``$`` lines in any block.

    A line that names make but does not read as a shell line is kept with no words, so that it fails.
    """
    commands = []
    continued = ""
    for info, number, line in split_fences(document.read_text())[1]:
        shell = continued + line.strip()
        if shell.endswith("\\"):
            continued = shell[:-1]
            continue
        continued = ""
        if shell.startswith("$ "):
            shell = shell[2:]
        elif info != "bash":
            continue
        if not re.search(r"\bmake\b", shell):
            continue
        try:
            commands += [MakeCommand(document, number, words) for words in make_invocations(shell)]
        except ValueError:
            commands.append(MakeCommand(document, number, None))
    return commands


LINKS = [link for document in DOCUMENTS for link in links(document) if not URL_SCHEME.match(link.target)]
MAKE_COMMANDS = [command for document in DOCUMENTS for command in make_commands(document)]


@pytest.mark.parametrize("link", [pytest.param(link, id=f"{link} {link.target}") for link in LINKS])
def test_relative_link_leads_to_a_file_and_heading(link: Link) -> None:
    path, _, anchor = link.target.partition("#")
    target = (link.source.parent / path).resolve() if path else link.source

    assert target.exists(), f"{link}: {path} does not exist"
    if anchor:
        assert target.suffix == ".md", f"{link}: #{anchor} points into {path}, which is not Markdown"
        assert anchor in anchors(target), f"{link}: no heading of {target.relative_to(PROJECT_ROOT)} is #{anchor}"


@pytest.mark.parametrize("command", [pytest.param(command, id=str(command)) for command in MAKE_COMMANDS])
def test_make_command_names_a_listed_target_and_variables_it_reads(command: MakeCommand) -> None:
    assert command.words is not None, f"{command}: names make but does not read as a shell line"
    targets = [word for word in command.words if not word.startswith("-") and "=" not in word]
    variables = [found.group(1) for word in command.words if (found := ASSIGNMENT.match(word))]
    # Beside what the Makefile reads itself, a target's help names what its program reads (DB=, BENCH_DB=).
    helps = make_help()
    documented = {name for target in targets for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", helps.get(target, ""))}

    assert not set(targets) - helps.keys(), f"{command}: make help lists no such target"
    assert not set(variables) - MAKEFILE_READS - documented, f"{command}: neither the Makefile nor the target reads it"


def test_migrate_command_lines_name_commands_and_their_options() -> None:
    """``python -m src.migrate COMMAND --option`` as the docs give it for a server without make."""
    written = [
        (document, line)
        for document in DOCUMENTS
        for _, _, line in split_fences(document.read_text())[1]
        if "-m src.migrate " in line
    ]
    parser = migrate_cli.parser()

    for document, line in written:
        words = shlex.split(line.partition("-m src.migrate ")[2], comments=True)
        assert parser.parse_args(words).command, f"{document.relative_to(PROJECT_ROOT)}: {line}"
    assert written


def test_the_readme_reads_in_five_minutes() -> None:
    lines = len(README.read_text().splitlines())

    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move a subject to docs/"


def test_every_docs_file_is_linked_from_another_document() -> None:
    linked = {
        (link.source.parent / link.target.partition("#")[0]).resolve()
        for link in LINKS
        if link.target.partition("#")[0]
    }

    assert [str(document.relative_to(PROJECT_ROOT)) for document in DOCUMENTS[1:] if document not in linked] == []


# The checks above are only as good as what they read: each reader is held to a case it must get right.


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Lock retries (PostgreSQL)") == "lock-retries-postgresql"
    assert slug("Expand and contract: post-deploy revisions") == "expand-and-contract-post-deploy-revisions"
    assert slug("`make migrate_sql` and SQLite") == "make-migrate_sql-and-sqlite"


def test_links_are_read_across_lines_and_not_inside_code(tmp_path: Path) -> None:
    document = tmp_path / "page.md"
    document.write_text("See [Fuzzing and\nsoak](a.md#b), `[not](c.md)`.\n\n```\n[nor](d.md)\n```\n")

    assert [(link.line, link.target) for link in links(document)] == [(1, "a.md#b")]


def test_make_is_found_where_the_shell_runs_it_and_nowhere_else() -> None:
    assert make_invocations("make serve HOST=0.0.0.0 PORT=8000   # then the app") == [
        ("serve", "HOST=0.0.0.0", "PORT=8000")
    ]
    assert make_invocations("python -m src.serve   # make serve") == []
    assert make_invocations('echo "make nothing" && FOO=1 make test') == [("test",)]
