"""Reading a page for tests/test_docs.py: its fenced blocks, the files it spells out, its shell commands as words."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

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


def assignment(word: Word) -> tuple[str, Word] | None:
    """``NAME=value`` as ``(NAME, value)``; ``None`` for a word that assigns nothing."""
    if not word or word[0][0] != "lit":
        return None
    match = re.match(r"^([A-Za-z_]\w*)=", word[0][1])
    if match is None:
        return None
    return match.group(1), [("lit", word[0][1][match.end() :]), *word[1:]]
