"""Running a page's commands for tests/test_docs.py: one in-process gateway and state store per page."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httpx

from devtools.processes import ROOT
from tests.doc_arguments import MODULES, check_dramatiq, check_module_arguments, check_pytest, synopsis
from tests.doc_pages import Block, Command, ShellSyntaxError, Word, assignment, output_documents, parse_script

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

#: Requests that answer the gateway's own 404 on purpose: path -> why.
NO_ROUTE_ON_PURPOSE = {
    "/nowhere": "shows the gateway's answer for an unknown path",
}

GATEWAY_HOSTS = {"localhost:3000", "127.0.0.1:3000"}
MANAGEMENT_HOSTS = {"localhost:15672", "127.0.0.1:15672"}
#: Exported by a page before it starts the gateway: the in-process gateway gets the same key.
ADMIN_KEY_VARIABLE = "CONVEYOR_ADMIN_KEY"


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
        while words and (found := assignment(words[0])) is not None:
            assignments.append(found)
            words = words[1:]
        if words and self._expand(words[0]) == "export":
            words = words[1:]
            assignments += [a for w in words if (a := assignment(w)) is not None]
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
            return check_dramatiq(args)
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
            return check_pytest(rest)
        if module not in MODULES:
            raise AssertionError(f"python -m {module}: not one of the project's modules {sorted(MODULES)}")
        check_module_arguments(module, synopsis(rest))
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


def _imports_project(code: str) -> bool:
    return re.search(r"\b(import|from)\s+(actors|conveyor|flows|gateway|scheduler|devtools|bench)\b", code) is not None


def _run_python(code: str, *, stdin: str | None, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], input=stdin or "", capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert done.returncode == 0, f"python -c exited {done.returncode}:\n{done.stderr[-2000:]}"
    return done.stdout
