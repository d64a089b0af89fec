"""Checking a command's arguments for tests/test_docs.py: the module's own parser, Dramatiq's, pytest's."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import runpy
import sys
import tomllib
import warnings
from typing import Any
from unittest import mock

from devtools.processes import ROOT

#: Modules a page may run with ``python -m``; anything else is a mistake or needs adding here.
MODULES = {
    "actors",
    "gateway",
    "scheduler",
    "devtools.launcher",
    "devtools.localnode",
    "bench.worker_throughput",
    "bench.orders",
    "bench.cluster",
    "bench.pipeline",
    "bench.tracing",
    "bench.gateway",
    "bench.memory",
    "bench.echo_app",
    "tests.faults",
}


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


def check_module_arguments(module: str, args: list[str]) -> None:
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


def check_dramatiq(args: list[str]) -> str:
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


def check_pytest(args: list[str]) -> str:
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


def synopsis(args: list[str]) -> list[str]:
    """A usage line's ``[--opt VALUE]`` and ``...`` become the options themselves."""
    if not any(arg.startswith("[") for arg in args):
        return args
    return [arg.strip("[]") for arg in args if arg.strip("[]") not in ("", "...")]
