"""Find the steps of the application: import every module of the flow packages and collect what they declare."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from ..errors import ConfigError, FlowImportError
from .registry import Registry
from .steps import declared_step


def load_flows(packages: Iterable[str], registry: Registry | None = None) -> Registry:
    """Import every module under each package and add the steps they declare to ``registry`` (a new one by default).

    A step counts where it is declared: a module that imports another module's handler does
    not declare it again. Raises :class:`~conveyor.errors.FlowImportError` naming the module
    (and the file and line) when one fails to import, and
    :class:`~conveyor.errors.StepDeclarationError` naming both modules for a step declared twice.
    """
    registry = Registry() if registry is None else registry
    for name in packages:
        for module in _modules(name):
            for value in list(vars(module).values()):
                step = declared_step(value)
                if step is not None and step.module == module.__name__:
                    registry.add(step)
    return registry


def _modules(package_name: str) -> list[ModuleType]:
    package = _import(package_name, listed=True)
    modules = [package]
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{package_name}."):
        modules.append(_import(info.name))
    return modules


def _import(name: str, *, listed: bool = False) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if listed and exc.name and name.startswith(exc.name):
            raise ConfigError(f"[project] flows lists {name!r}, which is not an importable package") from None
        raise FlowImportError(f"flow module {name!r} failed to import: {_describe(exc)}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)  # a half-run module must not pass for a loaded one next time
        raise FlowImportError(f"flow module {name!r} failed to import: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """The error and where it happened, in one line: ``SyntaxError: invalid syntax (flows/x.py, line 3)``."""
    if isinstance(exc, SyntaxError):
        text = (exc.text or "").strip()
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}, line {exc.lineno}){f': {text}' if text else ''}"
    frames = traceback.extract_tb(exc.__traceback__)
    # The innermost frame in the application's code, neither importlib's nor Conveyor's own (a
    # mistake in a @step(...) call is raised inside Conveyor), so the user sees their line.
    own = [f for f in frames if "importlib" not in f.filename and not f.filename.startswith(_CONVEYOR)]
    where = f" ({own[-1].filename}, line {own[-1].lineno})" if own else ""
    return f"{type(exc).__name__}: {exc}{where}"


#: Where Conveyor's own modules live (their frames are not the user's).
_CONVEYOR = str(Path(__file__).resolve().parent.parent) + os.sep
