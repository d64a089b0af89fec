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

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import os
import re
import runpy
import sqlite3
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "bench/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

#: Modules a page may run with ``python -m``; anything else is a mistake or needs adding here.
MODULES = {
    "actors",
    "gateway",
    "scheduler",
    "devtools.launcher",
    "devtools.localnode",
    "bench.worker_throughput",
    "bench.pipeline",
    "bench.gateway",
    "bench.memory",
    "bench.echo_app",
    "tests.faults",
}

#: Programs whose commands cannot run in CI, whatever page they are on.
SKIPPED_PROGRAMS = {
    "sudo": "runs as root, on the machine's own RabbitMQ",
    "rabbitmqctl": "talks to a running RabbitMQ node",
    "/usr/lib/rabbitmq/bin/rabbitmqctl": "talks to a running RabbitMQ node",
    "rabbitmq-plugins": "changes a RabbitMQ node",
    "apt-get": "installs Debian packages (root)",
    "pip": "installs into an environment of the reader's choice",
    "systemctl": "manages systemd units",
    "kill": "stops processes the page started",
}

#: Commands of one page that cannot run in CI: (page, a piece of the command) -> why.
SKIPPED_COMMANDS = {
    (
        "docs/configuration.md",
        "CONVEYOR_CONFIG=/tmp/bad.toml",
    ): "runs with the invalid file shown above it, to show the error",
    ("docs/job-queues.md", "python3 - <<'EOF'"): "starts a webhook receiver of its own on port 4000",
    ("docs/job-queues.md", "for n in 1 2 3 4 5"): "the backlog is built while the workers are stopped",
}

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

#: Requests that answer the gateway's own 404 on purpose: path -> why.
NO_ROUTE_ON_PURPOSE = {
    "/nowhere": "shows the gateway's answer for an unknown path",
}

#: Dotted names in a page's inline code that are not modules or attributes: name -> what it is.
NOT_MODULES = {
    "conveyor.skipped": "a state group",
}

GATEWAY_HOSTS = {"localhost:3000", "127.0.0.1:3000"}
MANAGEMENT_HOSTS = {"localhost:15672", "127.0.0.1:15672"}
#: Exported by a page before it starts the gateway: the in-process gateway gets the same key.
ADMIN_KEY_VARIABLE = "CONVEYOR_ADMIN_KEY"


# --- reading a page ---------------------------------------------------------------------------


@dataclass
class Block:
    lang: str
    body: str
    line: int


def fenced_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[i])
        if opening is None:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        blocks.append(Block(opening.group(1), "\n".join(body) + "\n", start))
        i += 1
    return blocks


def page_modules(text: str) -> dict[str, str]:
    """Files a page spells out: a line "`flows/x/y.py`:" followed by a python block."""
    found = {}
    for match in re.finditer(r"^`((?:flows)/[\w/]+\.py)`:\s*\n\s*\n?```python\n(.*?)^```", text, re.M | re.S):
        found[match.group(1)] = match.group(2)
    return found


def output_documents(block: Block | None) -> tuple[list[Any], dict[str, str]]:
    """The JSON documents an output block shows (one per line, or the whole block) and its headers."""
    if block is None or block.lang not in ("", "json", "text"):
        return [], {}
    documents: list[Any] = []
    headers: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        return [json.loads(block.body)], {}
    for line in block.body.splitlines():
        line = line.strip()
        if line.startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                documents.append(json.loads(line))
        elif re.match(r"^[A-Za-z-]+: ", line):
            name, _, value = line.partition(": ")
            headers[name.lower()] = value
    return documents, headers


# --- shell words ------------------------------------------------------------------------------

# A word is a list of parts: ("lit", text), ("var", name), ("sub", command text), ("placeholder", text).
Word = list[tuple[str, str]]


class ShellSyntaxError(Exception):
    """A command this reader does not understand: the page's command or this test needs fixing."""


@dataclass
class Command:
    source: str
    stages: list[list[Word]]
    heredoc: str | None = None
    compound: bool = False

    def first_word(self) -> str:
        words = self.stages[0] if self.stages else []
        return "".join(text for kind, text in words[0] if kind == "lit") if words else ""


def parse_script(script: str) -> list[Command]:
    """Split a block into commands: newlines and ``;`` end one, ``|`` separates stages, ``&`` is dropped."""
    return _group_compounds(_Reader(script).commands())


class _Reader:
    """Reads shell text the way the pages write it: quotes, ``$VAR``, ``$(...)``, ``<placeholder>``."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.i = 0
        self.found: list[Command] = []
        self.stages: list[list[Word]] = [[]]
        self.word: Word | None = None
        self.start = 0
        self.heredoc_delimiter: str | None = None
        self.heredoc_body: str | None = None

    def add(self, kind: str, text: str) -> None:
        if self.word is None:
            self.word = []
        self.word.append((kind, text))

    def end_word(self) -> None:
        if self.word is not None:
            merged: Word = []
            for kind, text in self.word:  # one literal part per run of literal text
                if kind == "lit" and merged and merged[-1][0] == "lit":
                    merged[-1] = ("lit", merged[-1][1] + text)
                else:
                    merged.append((kind, text))
            self.stages[-1].append(merged)
            self.word = None

    def end_command(self, at: int) -> None:
        self.end_word()
        if any(self.stages):
            source = self.script[self.start : at].strip()
            self.found.append(Command(source, [s for s in self.stages if s], heredoc=self.heredoc_body))
        self.stages, self.start, self.heredoc_body = [[]], at + 1, None

    def commands(self) -> list[Command]:
        script = self.script
        while self.i < len(script):
            c = script[self.i]
            if script.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#" and self.word is None:
                newline = script.find("\n", self.i)
                self.i = len(script) if newline < 0 else newline
            elif c in " \t":
                self.end_word()
                self.i += 1
            elif c == "\n" and self.heredoc_delimiter is not None:
                self.here_document()
            elif c in "\n;":
                self.end_command(self.i)
                self.i += 1
            elif c == "|":
                self.end_word()
                self.stages.append([])
                self.i += 1
            elif c == "&":
                if script.startswith("&&", self.i):
                    raise ShellSyntaxError("&& is not supported")
                self.end_word()
                self.i += 1
            elif c == "'":
                end = script.find("'", self.i + 1)
                if end < 0:
                    raise ShellSyntaxError("unterminated single quote")
                self.add("lit", script[self.i + 1 : end])
                self.i = end + 1
            elif c == '"':
                self.double_quoted()
            elif c == "$":
                self.dollar()
            elif c == "\\":
                self.add("lit", script[self.i + 1 : self.i + 2])
                self.i += 2
            elif script.startswith("<<", self.i):
                match = re.match(r"<<-?\s*['\"]?(\w+)['\"]?", script[self.i :])
                if match is None:
                    raise ShellSyntaxError("unreadable here-document")
                self.end_word()
                self.heredoc_delimiter = match.group(1)
                self.i += match.end()
            elif c == "<":
                end = script.find(">", self.i)
                if end < 0 or not re.fullmatch(r"[A-Za-z][\w ]*", script[self.i + 1 : end]):
                    raise ShellSyntaxError("redirections are not supported")
                self.add("placeholder", script[self.i + 1 : end])
                self.i = end + 1
            elif c in ">(){}`":
                raise ShellSyntaxError(f"{c!r} outside quotes is not supported")
            else:
                self.add("lit", c)
                self.i += 1
        self.end_command(len(script))
        return self.found

    def here_document(self) -> None:
        rest = self.script[self.i + 1 :]
        end = re.search(rf"^{re.escape(self.heredoc_delimiter or '')}$", rest, re.M)
        if end is None:
            raise ShellSyntaxError(f"here-document without its {self.heredoc_delimiter} line")
        self.heredoc_body = rest[: end.start()]
        self.end_command(self.i)
        self.i += 1 + end.end()
        self.start = self.i
        self.heredoc_delimiter = None

    def double_quoted(self) -> None:
        script = self.script
        self.i += 1
        self.add("lit", "")  # an empty "" is still a word
        while self.i < len(script):
            c = script[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and script[self.i + 1 : self.i + 2] in ('"', "\\", "$", "`", "\n"):
                if script[self.i + 1] != "\n":
                    self.add("lit", script[self.i + 1])
                self.i += 2
            elif c == "$":
                self.dollar()
            else:
                self.add("lit", c)
                self.i += 1
        raise ShellSyntaxError("unterminated double quote")

    def dollar(self) -> None:
        script, i = self.script, self.i
        if script.startswith("$(", i):
            depth, j, quote = 0, i + 1, ""
            while j < len(script):
                c = script[j]
                if quote:
                    quote = "" if c == quote else quote
                elif c in "'\"":
                    quote = c
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        self.add("sub", script[i + 2 : j])
                        self.i = j + 1
                        return
                j += 1
            raise ShellSyntaxError("unterminated $(")
        name = re.match(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))", script[i:])
        if name is None:
            self.add("lit", "$")
            self.i += 1
            return
        self.add("var", name.group(1) or name.group(2))
        self.i += name.end()


def _group_compounds(commands: list[Command]) -> list[Command]:
    """``for ...; do ...; done`` and the like become one command, marked compound."""
    grouped: list[Command] = []
    depth = 0
    for command in commands:
        first = command.first_word()
        if depth:
            grouped[-1].source += "\n" + command.source
            depth += first in ("for", "while", "until", "if")
            depth -= first in ("done", "fi")
            continue
        if first in ("for", "while", "until", "if"):
            command.compound = True
            depth = 1
        grouped.append(command)
    if depth:
        raise ShellSyntaxError(f"unterminated compound command: {grouped[-1].source[:60]}")
    return grouped


# --- running a page ---------------------------------------------------------------------------


class Skipped(Exception):
    """A command that cannot run here, and why."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    path: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class PageRun:
    """One page's commands against one in-process gateway and state store."""

    page: str
    tmp: Path
    modules: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    skipped_variables: set[str] = field(default_factory=set)
    #: Values of the page's answers (``orderId`` -> the id the last answer gave), for placeholders.
    fields: dict[str, str] = field(default_factory=dict)
    #: Ids the page shows in its sample answers -> the ids the real answers gave.
    ids: dict[str, str] = field(default_factory=dict)
    expected: Block | None = None
    _flow: Any = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # -- the environment -----------------------------------------------------------------------

    @property
    def flow(self) -> Any:
        if self._flow is None:
            self._flow = self._stack.enter_context(self._flow_environment())
        return self._flow

    @contextlib.contextmanager
    def _flow_environment(self) -> Iterator[Any]:
        from conveyor.testing import FlowEnvironment

        packages = ["flows"]
        added: list[str] = []
        if self.modules:
            # A flow the page spells out file by file (writing-steps' signups) runs as the page shows it.
            base = self.tmp / "page_flows"
            for path, source in self.modules.items():
                package = Path(path).parts[1]
                if (ROOT / "flows" / package).exists():
                    continue
                target = base / Path(path).relative_to("flows")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(source)
                if package not in packages:
                    packages.append(package)
                    added.append(package)
            sys.path.insert(0, str(base))
        settings = ""
        if ADMIN_KEY_VARIABLE in self.variables:
            settings = f'[admin]\napi_key = "{self.variables[ADMIN_KEY_VARIABLE]}"\n'
        try:
            with (
                # No webhook receiver runs here (its command is skipped): DeliverWebhook's POSTs are refused.
                mock.patch("httpx.post", side_effect=httpx.ConnectError("no receiver in the docs test")),
                FlowEnvironment(*packages, config=ROOT / "config.toml", settings=settings) as flow,
            ):
                yield flow
        finally:
            if self.modules:
                sys.path.remove(str(self.tmp / "page_flows"))
                for name in list(sys.modules):
                    if name.split(".")[0] in added:
                        del sys.modules[name]

    def close(self) -> None:
        self._stack.close()

    # -- one command ---------------------------------------------------------------------------

    def run(self, command: Command) -> str:
        for (page, piece), reason in SKIPPED_COMMANDS.items():
            if page == self.page and piece in command.source:
                raise Skipped(reason)
        if command.compound or command.heredoc is not None:
            raise ShellSyntaxError(
                f"compound commands and here-documents need a SKIPPED_COMMANDS entry: {command.source}"
            )
        output = ""
        for index, stage in enumerate(command.stages):
            output = self._stage(stage, stdin=output if index else None)
        return output

    def _stage(self, words: list[Word], *, stdin: str | None) -> str:
        assignments: list[tuple[str, Word]] = []
        while words and (assignment := _assignment(words[0])) is not None:
            assignments.append(assignment)
            words = words[1:]
        if words and self._expand(words[0]) == "export":
            words = words[1:]
            assignments += [a for w in words if (a := _assignment(w)) is not None]
            words = []
        if not words:
            for name, value in assignments:
                try:
                    self.variables[name] = self._expand(value)
                except Skipped:
                    self.skipped_variables.add(name)
                    raise
            return ""
        program = self._expand(words[0])
        if program in SKIPPED_PROGRAMS:
            raise Skipped(SKIPPED_PROGRAMS[program])
        env = {name: self._expand(value) for name, value in assignments}
        args = [self._expand(word) for word in words[1:]]
        return self._program(program, args, env=env, stdin=stdin)

    def _expand(self, word: Word) -> str:
        text = []
        for kind, value in word:
            if kind == "lit":
                text.append(self._real_ids(value))
            elif kind == "var":
                if value in self.variables:
                    text.append(self.variables[value])
                elif value in self.skipped_variables:
                    raise Skipped(f"uses ${value}, which a skipped command sets")
                else:
                    raise AssertionError(f"${value} is set by no earlier command of the page")
            elif kind == "sub":
                [command] = parse_script(value)
                text.append(self.run(command).rstrip("\n"))
            else:
                name = value.split()[0]
                if name not in self.fields:
                    raise AssertionError(f"placeholder <{value}>: no earlier answer of the page has {name!r}")
                text.append(self.fields[name])
        return "".join(text)

    def _real_ids(self, text: str) -> str:
        for documented, real in self.ids.items():
            text = re.sub(rf"(?<![\w-]){re.escape(documented)}(?![\w-])", real, text)
        return text

    def _program(self, program: str, args: list[str], *, env: dict[str, str], stdin: str | None) -> str:
        if program == ".venv/bin/python":
            return self._python(args, env=env, stdin=stdin)
        if program == ".venv/bin/dramatiq":
            return _check_dramatiq(args)
        name = program.rsplit("/", 1)[-1]
        if name in ("python", "python3", "dramatiq"):
            if program == "python3" and args[:1] == ["-c"] and not _imports_project(args[1]):
                return _run_python(args[1], stdin=stdin, env=self._process_env(env))  # the standard library only
            raise AssertionError(f"{program} {' '.join(args)}: write it as .venv/bin/{name} (the pages' convention)")
        if program == "bash":
            script = args[0]
            if not (ROOT / script).is_file():
                raise AssertionError(f"bash {script}: no such script")
            return ""
        if program == "curl":
            return self._curl(args)
        if program == "sqlite3":
            return self._sqlite(args)
        if program == "sleep":
            return ""  # every gateway request waits for the flows' background work first
        if program == "cut":
            return _cut(args, stdin or "")
        raise AssertionError(f"{program}: this test does not know the program; run it or skip it with a reason")

    def _process_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
        env.update(self.variables)
        env.update(extra)
        env.update(CONVEYOR_BROKER="memory", CONVEYOR_STATE_PATH=str(self.tmp / "python-c.db"))
        return env

    def _python(self, args: list[str], *, env: dict[str, str], stdin: str | None) -> str:
        if args[:1] == ["-c"]:
            return _run_python(args[1], stdin=stdin, env=self._process_env(env))
        if args[:1] != ["-m"] or len(args) < 2:
            raise AssertionError(f"python {' '.join(args)}: only -m and -c are understood here")
        module, rest = args[1], args[2:]
        if module == "pytest":
            return _check_pytest(rest)
        if module not in MODULES:
            raise AssertionError(f"python -m {module}: not one of the project's modules {sorted(MODULES)}")
        _check_module_arguments(module, _synopsis(rest))
        return ""

    # -- curl ----------------------------------------------------------------------------------

    def _curl(self, args: list[str]) -> str:
        method, headers, data, url = None, {}, None, None
        show_headers, write_out, discard = False, None, False
        options = iter(args)
        for arg in options:
            if arg == "-s":
                continue
            if arg == "-i":
                show_headers = True
            elif arg == "-X":
                method = next(options)
            elif arg == "-H":
                name, _, value = next(options).partition(":")
                headers[name.strip().lower()] = value.strip()
            elif arg == "-d":
                data = next(options)
            elif arg == "-o":
                discard = next(options) == "/dev/null"
            elif arg == "-w":
                write_out = next(options)
            elif arg == "-u":
                next(options)
            elif arg.startswith("http"):
                url = arg
            else:
                raise AssertionError(f"curl {arg}: an option this test does not know")
        assert url is not None, "curl without a URL"
        parts = urlsplit(url)
        if parts.netloc in MANAGEMENT_HOSTS:
            raise Skipped("RabbitMQ's management API")
        assert parts.netloc in GATEWAY_HOSTS, f"curl {url}: not the gateway of config.toml"
        method = method or ("POST" if data is not None else "GET")
        if data is not None:
            headers.setdefault("content-type", "application/x-www-form-urlencoded")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        # A reader types the next command after the last one's background work: let it finish first.
        self.flow.join()
        response = self.flow.http.request(
            method, target, content=data.encode() if data is not None else None, headers=headers
        )
        answer = Answer(response.status_code, dict(response.headers), response.content, parts.path)
        self._judge(method, target, answer)
        self._remember(answer)
        output = ""
        if show_headers:
            output += f"HTTP/1.1 {answer.status} {response.reason_phrase}\n"
            output += "".join(f"{k}: {v}\n" for k, v in answer.headers.items()) + "\n"
        if not discard:
            output += answer.body.decode()
        if write_out is not None:
            output += _write_out(write_out, answer)
        return output

    def _judge(self, method: str, target: str, answer: Answer) -> None:
        where = f"{method} {target} answered {answer.status}: {answer.body[:300]!r}"
        body = answer.json()
        error = body.get("error", "") if isinstance(body, dict) else ""
        if answer.status == 404 and str(error).startswith("No route for"):
            assert answer.path in NO_ROUTE_ON_PURPOSE, f"{where}: the gateway has no such route"
        if answer.status == 501 and answer.path.startswith("/_admin/") and "needs RabbitMQ" in str(error):
            return  # the admin endpoints read RabbitMQ; the in-process broker is not it
        assert answer.status < 500, where
        if answer.status >= 400:
            documents, _ = output_documents(self.expected)
            if documents:
                assert body in documents, f"{where}, which is not among the answers the page shows"

    def _remember(self, answer: Answer) -> None:
        body = answer.json()
        if answer.status >= 300 or not isinstance(body, dict):
            return
        for key, value in body.items():
            if isinstance(value, str | int) and not isinstance(value, bool):
                self.fields[key] = str(value)
        documents, headers = output_documents(self.expected)
        # The ids of the page's sample answer stand for the ones this run made, in later commands.
        candidates = [d for d in documents if isinstance(d, dict) and _same_answer(d, body)]
        if len(candidates) == 1:
            for key, documented in candidates[0].items():
                real = body.get(key)
                if _is_id(key) and isinstance(documented, str) and isinstance(real, str) and len(documented) >= 3:
                    self.ids[documented] = real
        if "location" in headers and "location" in answer.headers:
            documented, real = headers["location"], answer.headers["location"]
            self.ids[documented] = real
            self.ids[documented.rsplit("/", 1)[-1]] = real.rsplit("/", 1)[-1]

    # -- sqlite3 -------------------------------------------------------------------------------

    def _sqlite(self, args: list[str]) -> str:
        path, sql = args
        assert path == "var/state.db", f"sqlite3 {path}: the pages' state store is var/state.db ([state] path)"
        self.flow.join()
        with contextlib.closing(sqlite3.connect(self.flow.config.state_path())) as db, db:
            rows = db.execute(sql).fetchall()
        return "".join("|".join(str(value) for value in row) + "\n" for row in rows)


def _assignment(word: Word) -> tuple[str, Word] | None:
    if not word or word[0][0] != "lit":
        return None
    match = re.match(r"^([A-Za-z_]\w*)=", word[0][1])
    if match is None:
        return None
    return match.group(1), [("lit", word[0][1][match.end() :]), *word[1:]]


def _same_answer(documented: dict[str, Any], real: dict[str, Any]) -> bool:
    """Is ``documented`` the page's sample of ``real``: the same keys, equal but for ids and times?"""
    if set(documented) != set(real):
        return False
    return all(
        documented[key] == real[key]
        for key in documented
        if not _is_id(key) and not re.search(r"(At|timestamp|Time)$", key) and not isinstance(real[key], dict | list)
    )


def _is_id(key: str) -> bool:
    return key == "id" or key.endswith("Id")


def _write_out(template: str, answer: Answer) -> str:
    text = template.replace("\\n", "\n").replace("%{http_code}", str(answer.status))
    return re.sub(r"%header\{([\w-]+)\}", lambda m: answer.headers.get(m.group(1).lower(), ""), text)


def _cut(args: list[str], text: str) -> str:
    delimiter = next(a[2:] for a in args if a.startswith("-d"))
    index = int(next(a[2:] for a in args if a.startswith("-f")))
    return "".join(line.split(delimiter)[index - 1] + "\n" for line in text.splitlines())


def _synopsis(args: list[str]) -> list[str]:
    """A usage line's ``[--opt VALUE]`` and ``...`` become the options themselves."""
    if not any(arg.startswith("[") for arg in args):
        return args
    return [arg.strip("[]") for arg in args if arg.strip("[]") not in ("", "...")]


def _imports_project(code: str) -> bool:
    return re.search(r"\b(import|from)\s+(actors|conveyor|flows|gateway|scheduler|devtools|bench)\b", code) is not None


def _run_python(code: str, *, stdin: str | None, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], input=stdin or "", capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert done.returncode == 0, f"python -c exited {done.returncode}:\n{done.stderr[-2000:]}"
    return done.stdout


# --- argument parsers -------------------------------------------------------------------------


class _Parsed(BaseException):
    """Raised in place of returning from ``parse_args``: the module accepted its arguments."""


class _ReachedWork(BaseException):
    """The module went on to its work without parsing any argument."""


class _Runtime:
    """What a front door gets from ``boot_or_exit`` here: the config, and nothing to work with."""

    broker = None

    def __init__(self) -> None:
        from conveyor.config import load_config

        self.config = load_config(ROOT / "config.toml")

    def __getattr__(self, name: str) -> Any:
        raise _ReachedWork(name)


def _check_module_arguments(module: str, args: list[str]) -> None:
    """Run ``python -m module args`` until its parser has accepted ``args`` (or refused them)."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(self: argparse.ArgumentParser, *a: Any, **k: Any) -> Any:
        raise _Parsed(original(self, *a, **k))

    runtime = _Runtime()
    before = set(sys.modules)
    errors = io.StringIO()
    try:
        with (
            mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args),
            mock.patch("conveyor.runtime.boot_or_exit", lambda *a, **k: runtime),
            mock.patch("conveyor.runtime.boot", lambda *a, **k: runtime),
            mock.patch.object(sys, "argv", [module, *args]),
            contextlib.redirect_stderr(errors),
            warnings.catch_warnings(),
        ):
            # Run as __main__ a module other tests imported already (tests.faults): runpy warns, harmlessly.
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except _Parsed:
        return
    except _ReachedWork:
        assert not args, f"python -m {module} reads no arguments, but the page gives it {args}"
        return
    except SystemExit as exc:
        message = f"python -m {module} {' '.join(args)} refused (exit {exc.code}): {errors.getvalue()}"
        raise AssertionError(message) from None
    finally:
        # `actors` holds the runtime it booted (here the stand-in): a later import must boot for real.
        for name in set(sys.modules) - before:
            if name == "actors" or name.startswith("actors."):
                del sys.modules[name]
    assert not args, f"python -m {module} ran without parsing {args}"


def _check_dramatiq(args: list[str]) -> str:
    from dramatiq.cli import make_argument_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parsed = make_argument_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"dramatiq {' '.join(args)} refused (exit {exc.code}): {errors.getvalue()}") from None
    for module in [parsed.broker, *parsed.modules]:
        name = module.split(":")[0]
        assert importlib.util.find_spec(name) is not None, f"dramatiq {' '.join(args)}: no module {name}"
    return ""


def _check_pytest(args: list[str]) -> str:
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    known = {marker.split(":")[0] for marker in markers}
    options = iter(args)
    for arg in options:
        if arg == "-m":
            names = set(re.findall(r"\w+", next(options))) - {"and", "or", "not"}
            assert names <= known, f"pytest -m: unknown markers {sorted(names - known)}"
        elif not arg.startswith("-"):
            assert (ROOT / arg.split("::")[0]).exists(), f"pytest {arg}: no such path"
    return ""


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
