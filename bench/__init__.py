"""Conveyor's benchmark scripts: run by hand with ``python -m bench.<name>`` (see bench/README.md)."""
