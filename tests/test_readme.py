"""The README and the pages under docs/ stay true: every `ldengine` command line they show
names commands and flags that exist, their eval commands run on a fresh clone, the Python
API page's example runs as written, the reference page's table of environment variables
names every one the code reads, and every link between the pages leads to a file."""
import contextlib
import io
import re
import shlex
from pathlib import Path

import click
import pytest

from ldengine.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = {path: path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
DOCS = "\n".join(PAGES.values())
SHELL = {"", "bash", "sh", "shell", "console"}


def code_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", DOCS, re.M | re.S)


def command_lines() -> list[str]:
    """Every line that runs ldengine: in the shell blocks, and the CLI reference table's rows."""
    lines = []
    for language, body in code_blocks():
        if language in SHELL:
            lines += [line for line in body.replace("\\\n", " ").splitlines()
                      if re.search(r"(^|[\s/])ldengine\s", line)]
    lines += [row.split("`")[1] for row in DOCS.splitlines() if row.startswith("| `ldengine ")]
    return lines


def words_of(line: str) -> list[str]:
    """The words from `ldengine` on; optional parts ([...]) and alternatives (a\\|b) opened up."""
    line = re.sub(r"(^|\s)#.*$", "", line).replace("\\|", " ").replace("[", " ").replace("]", " ")
    words = shlex.split(line)
    start = next(i for i, w in enumerate(words) if w == "ldengine" or w.endswith("/ldengine"))
    return words[start + 1:]


def resolve(words: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The command the words name, its path, and the words after it."""
    command, path, rest = cli, [], list(words)
    while isinstance(command, click.Group) and rest:
        while rest and rest[0] in flags_of(command):     # a group's own flags (--verbose)
            rest.pop(0)
        if not rest or rest[0] not in command.commands:
            break
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    return command, path, rest


def flags_of(command: click.Command) -> set[str]:
    # command.params, not get_params(): that would build (and click caches) a help option
    # from a bare context, which loses the "-h" the real group gives every command
    return {opt for p in command.params if isinstance(p, click.Option)
            for opt in p.opts + p.secondary_opts} | {"-h", "--help"}


LINES = command_lines()


def test_the_readme_shows_command_lines():
    """The extraction finds the README's commands (a broken pattern must not pass vacuously)."""
    assert len(LINES) > 40
    assert any(words_of(line)[:1] == ["plot"] for line in LINES)


@pytest.mark.parametrize("line", LINES)
def test_each_command_line_uses_commands_and_flags_that_exist(line):
    """It names a command (not a group alone) and only flags that command has."""
    command, path, rest = resolve(words_of(line))
    assert path, f"{line!r}: no ldengine command named"
    assert not isinstance(command, click.Group), f"{line!r}: {' '.join(path)} needs a subcommand"
    flags = flags_of(command)
    unknown = [w.split("=")[0] for w in rest if re.match(r"--?[A-Za-z]", w) and w.split("=")[0] not in flags]
    assert not unknown, f"{line!r}: ldengine {' '.join(path)} has no {', '.join(unknown)}"


def test_the_eval_commands_work_on_a_fresh_clone():
    """An eval into a folder that the repository already holds a run in is refused ("already
    holds a run"): each documented eval writes elsewhere, or continues with --resume."""
    evals = [words_of(line) for line in LINES if resolve(words_of(line))[1] == ["eval"]]
    assert len(evals) >= 3
    default = next(p.default for p in cli.commands["eval"].params if p.name == "out")
    for words in evals:
        out = words[words.index("--out") + 1] if "--out" in words else default
        if out == "DIR":
            continue                                    # the reference table's placeholder
        committed = (ROOT / out / "run.json").exists()
        assert not committed or "--resume" in words, f"ldengine {' '.join(words)}: {out} already holds a run"


def test_the_python_api_example_runs_and_prints_what_it_says():
    """The Python API page's block runs as written; each `print(...)  # -> X` prints X."""
    section = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8").split("## Python API", 1)[1]
    source = re.search(r"^```python\n(.*?)^```", section, re.M | re.S).group(1)
    expected = [line.split("# -> ", 1)[1].strip() for line in source.splitlines() if "# -> " in line]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "README.md (Python API)", "exec"), {})
    assert printed.getvalue().splitlines() == expected


def test_the_environment_table_names_every_variable_the_code_reads():
    """Each environment variable read in ldengine/ and plugins/ has a row in the reference page's table."""
    read = set()
    for folder in ("ldengine", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            if "build" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            read |= set(re.findall(r'"(LDENGINE_[A-Z_]+)"', text))
            read |= set(re.findall(r'os\.environ(?:\.get|\.setdefault)?[(\[]\s*"([A-Z_]+)"', text))
    table = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8").split("## Environment variables", 1)[1]
    table = table.split("\n## ", 1)[0]
    rows = {name for row in re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \|", table, re.M)
            for name in re.findall(r"`([A-Z_]+)`", row)}
    assert {"LDENGINE_SANDBOX", "LDENGINE_EMERGENCY_DIR", "HF_HUB_OFFLINE"} <= read
    assert read <= rows, f"not in the README's table: {sorted(read - rows)}"


def test_the_readme_does_not_send_readers_outside_the_repository():
    """No reference to files the repository does not hold (DESIGN.md lives outside it), in the README
    or in a docstring or comment of the code and tests."""
    assert "../shared" not in DOCS and "DESIGN.md" not in DOCS
    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("ldengine/**/*.py"), *root.glob("plugins/**/*.py"), *root.glob("tests/*.py")]:
        text = path.read_text(encoding="utf-8")
        cited = [w for w in ("DESIGN" + ".md", "STYLE" + ".md") if w in text]
        assert not cited or path.name == "test_readme.py", (path, cited)


def test_every_link_between_the_pages_leads_to_a_file():
    """Each relative link of the README and the docs pages names a file of the repository."""
    links = [(path, target) for path, text in PAGES.items()
             for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in target]
    assert len(links) > 20
    missing = [f"{path.relative_to(ROOT)} -> {target}" for path, target in links
               if not (path.parent / target).exists()]
    assert not missing, missing


def test_the_readme_is_short_and_sends_readers_to_every_page():
    """A newcomer's README: the two commands, the tour, the figures, and a link to each page."""
    assert len(README.splitlines()) <= 250
    for path in PAGES:
        if path.parent.name == "docs" and path.name != "index.md":
            assert f"docs/{path.name}" in README, f"the README does not link {path.name}"
