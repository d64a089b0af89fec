"""Loading flows: importing a flow only declares; mistakes name the module, the file and the step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor import ConfigError, FlowImportError, StepDeclarationError, queue, step
from conveyor.declare.flows import load_flows

ROOT = Path(__file__).resolve().parent.parent

STEP = """
from conveyor import queue, step

@step(name="{name}", triggers=[queue("{topic}")])
def handler(data, ctx):
    return None
"""


def flow_package(base: Path, name: str, modules: dict[str, str]) -> None:
    package = base / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))


def test_the_steps_of_every_module_are_collected_once(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    flow_package(
        tmp_path,
        "flow_ok",
        {
            "a": STEP.format(name="A", topic="t"),
            "b": STEP.format(name="B", topic="t") + "\nfrom .a import handler as borrowed\n",
        },
    )
    registry = load_flows(["flow_ok"])
    assert sorted(registry.steps) == ["A", "B"]
    assert [s.name for s in registry.subscribers()["t"]] == ["A", "B"]
    # Loading again builds a new registry from the same modules: nothing is declared twice.
    assert sorted(load_flows(["flow_ok"]).steps) == ["A", "B"]


def test_a_module_with_a_syntax_error_is_named_with_its_file_and_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    flow_package(tmp_path, "flow_syntax", {"broken": "def handler(data, ctx)\n    return None\n"})
    with pytest.raises(FlowImportError) as caught:
        load_flows(["flow_syntax"])
    message = str(caught.value)
    assert "flow module 'flow_syntax.broken' failed to import: SyntaxError" in message
    assert f"{tmp_path / 'flow_syntax' / 'broken.py'}, line 1" in message


def test_a_module_that_raises_on_import_is_named_with_the_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    flow_package(tmp_path, "flow_raises", {"bad": "x = 1\nraise RuntimeError('no database here')\n"})
    with pytest.raises(FlowImportError, match=r"flow_raises.bad.*RuntimeError: no database here \(.*bad.py, line 2\)"):
        load_flows(["flow_raises"])


def test_a_step_declared_twice_names_both_modules(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    flow_package(
        tmp_path, "flow_twice", {"one": STEP.format(name="Same", topic="t"), "two": STEP.format(name="Same", topic="u")}
    )
    with pytest.raises(StepDeclarationError, match=r"'Same' is declared twice \(flow_twice.one and flow_twice.two\)"):
        load_flows(["flow_twice"])


def test_a_handler_with_the_wrong_signature_is_refused_naming_step_and_module():
    with pytest.raises(StepDeclarationError, match=r"step 'Lonely' in tests.test_load_flows.*handler\(input, ctx\)"):

        @step(name="Lonely", triggers=[queue("t")])
        def lonely(data):  # no ctx
            return None

    with pytest.raises(StepDeclarationError, match="'Keyed'"):

        @step(name="Keyed", triggers=[queue("t")])
        def keyed(data, ctx, *, extra):
            return None


def test_a_bad_step_declaration_is_named_with_the_users_line_not_conveyors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    source = """from conveyor import queue, step


@step(name="Slow", triggers=[queue("t")], max_retries=-1)
def handler(data, ctx):
    pass
"""
    flow_package(tmp_path, "flow_settings", {"slow": source})
    with pytest.raises(FlowImportError) as caught:
        load_flows(["flow_settings"])
    message = str(caught.value)
    assert "step 'Slow' has invalid settings: max_retries" in message
    assert f"({tmp_path / 'flow_settings' / 'slow.py'}, line 4)" in message


def test_a_package_that_does_not_exist_is_a_config_error():
    with pytest.raises(ConfigError, match="lists 'no_such_flows', which is not an importable package"):
        load_flows(["no_such_flows"])


AUDIT = r"""
import importlib, json, pkgutil, sys

events = []

def audit(event, args):
    if event.startswith("socket.") or event in ("os.mkdir", "os.remove", "os.rename", "shutil.rmtree"):
        events.append([event, repr(args)[:200]])
    elif event == "open" and isinstance(args[1], str) and any(m in args[1] for m in "wax+"):
        events.append([event, repr(args)[:200]])

sys.addaudithook(audit)
import flows
modules = [info.name for info in pkgutil.walk_packages(flows.__path__, prefix="flows.")]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"modules": len(modules), "events": events}))
"""


def test_importing_every_shipped_flow_module_opens_no_socket_and_writes_no_file(tmp_path):
    """In a fresh Python, no RabbitMQ, no config.toml, an empty working directory."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", AUDIT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["modules"] >= 50  # every step module of the five flows
    assert found["events"] == []
    assert list(tmp_path.iterdir()) == []
