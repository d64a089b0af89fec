"""Declaring steps: what a user writes, with no broker and no I/O.

A step is a handler plus its triggers (:mod:`.triggers`); :func:`~.steps.step` declares one,
:func:`~.flows.load_flows` collects the steps of the flow packages into a :class:`~.registry.Registry`.
"""
