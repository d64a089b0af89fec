"""The pages' commands, run as far as they can run without RabbitMQ.

Every fenced ``sh`` block of README.md, bench/README.md and docs/*.md is read as shell commands,
and each command is checked the way it can be checked in CI, with no RabbitMQ and no process
of its own:

- ``.venv/bin/python -m MODULE ARGS``: the module is one of the project's front doors or tools,
  and its own argument parser accepts ARGS (the module runs until it has parsed them);
- ``.venv/bin/dramatiq ARGS``: Dramatiq's parser accepts ARGS and the broker module exists;
- ``.venv/bin/python -c CODE``: it runs and exits 0, on the in-memory broker;
- ``curl`` to the gateway: the request goes to the real gateway app in process
  (:class:`conveyor.testing.FlowEnvironment` on every flow and the shipped config.toml) and must
  not answer 5xx or "no route"; a 4xx answer must be one the page shows after the command;
- ``sqlite3 var/state.db SQL``: the SQL runs against that environment's state store;
- ``bash scripts/X.sh``, paths given to pytest: they exist.

Commands that need more than that (a RabbitMQ node, root, a server of their own) are in
explicit skip lists below, each with its reason. Every page is a case of its own, with one state
store, so ids made by one command (an order, a pet) feed the next: a ``<placeholder>`` takes the
field of that name from an earlier answer, and an id shown in a sample answer stands for the id
the real answer gave. Before each request the flows' background work is let finish, as it has
by the time a reader types the next command.

A command written with a bare ``python`` or ``dramatiq`` fails: the pages' convention is the
``.venv`` that ``bash scripts/run.sh`` or ``bash scripts/test.sh`` makes.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import ROOT
from tests.doc_commands import SKIPPED_COMMANDS, PageRun, Skipped
from tests.doc_pages import Block, Command, ShellSyntaxError, fenced_blocks, page_modules, parse_script

PAGES = ["README.md", "bench/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

#: The project's own top-level folders: a path in a page's inline code under one of them must exist.
PROJECT_FOLDERS = {
    "actors",
    "bench",
    "conveyor",
    "devtools",
    "docs",
    "flows",
    "gateway",
    "scheduler",
    "scripts",
    "tests",
}

#: Dotted names in a page's inline code that are not modules or attributes: name -> what it is.
NOT_MODULES = {
    "conveyor.skipped": "a state group",
}


# --- the tests --------------------------------------------------------------------------------


def page_commands(page: str) -> list[tuple[Block, Command, Block | None]]:
    blocks = fenced_blocks((ROOT / page).read_text())
    found = []
    for index, block in enumerate(blocks):
        if block.lang != "sh":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        for command in parse_script(block.body):
            found.append((block, command, following))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_commands_run(page, tmp_path):
    text = (ROOT / page).read_text()
    run = PageRun(page, tmp_path, page_modules(text))
    ran, skipped = [], []
    try:
        for block, command, following in page_commands(page):
            run.expected = following
            try:
                run.run(command)
            except Skipped as why:
                skipped.append(f"{command.source.splitlines()[0]}: {why}")
                continue
            except (AssertionError, ShellSyntaxError) as exc:
                raise AssertionError(f"{page}, block at line {block.line}: {command.source}\n{exc}") from None
            ran.append(command.source)
    finally:
        run.close()
    print(f"{page}: {len(ran)} commands ran, {len(skipped)} skipped", *skipped, sep="\n  ")


def test_every_skip_entry_still_matches_a_command():
    for (page, piece), reason in SKIPPED_COMMANDS.items():
        sources = [command.source for _, command, _ in page_commands(page)]
        assert any(piece in source for source in sources), f"{page}: no command holds {piece!r} ({reason})"


@pytest.mark.parametrize("page", PAGES)
def test_the_paths_and_modules_a_page_names_exist(page):
    text = (ROOT / page).read_text()
    spelled_out = set(page_modules(text))
    spelled_out |= {str(Path(path).parent) for path in spelled_out}
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    problems = []
    for code in re.findall(r"`([^`\n]+)`", prose):
        for token in code.split():
            path = token.removeprefix("../").rstrip(",.:;)")
            top = path.split("/")[0]
            if "/" in path and top in PROJECT_FOLDERS and re.fullmatch(r"[\w./-]+", path):
                here = (ROOT / page).parent / path  # bench/README.md names bench's files from bench/
                if not (ROOT / path).exists() and not here.exists() and path.rstrip("/") not in spelled_out:
                    problems.append(f"path {path}")
        if re.fullmatch(r"(conveyor|devtools|flows|bench|tests|gateway|scheduler)(\.[A-Za-z_]\w*)+", code):
            if code not in NOT_MODULES and not _resolves(code):
                problems.append(f"name {code}")
    assert not problems, f"{page} names what does not exist: {problems}"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def test_the_reader_understands_shell_as_the_pages_write_it():
    [assign, plain] = parse_script(
        "ORDER=$(curl -s -X POST http://localhost:3000/orders \\\n  -d '{\"a\": 1}' | python3 -c 'print(1)')\n"
        "curl -s http://localhost:3000/orders/$ORDER &  # a comment\n"
    )
    assert len(assign.stages) == 1 and assign.stages[0][0][1][0] == "sub"
    assert plain.stages[0][2] == [("lit", "http://localhost:3000/orders/"), ("var", "ORDER")]
    [loop] = parse_script("for n in 1 2; do\n  echo $n\ndone\n")
    assert loop.compound
    with pytest.raises(ShellSyntaxError):
        parse_script("echo hi > out.txt\n")
