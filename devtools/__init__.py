"""Tools for running Conveyor on one machine: for development, the tests and the benchmarks.

Not part of the runtime (nothing under ``conveyor/`` imports this package) and not shipped in
the wheel: a project-owned RabbitMQ node (:mod:`.localnode`), a supervisor that restarts what
dies (:mod:`.supervisor`), the run command (:mod:`.launcher`), and the process harness the
tests and benchmarks share (:mod:`.processes`).
"""
