from __future__ import annotations

import pytest

from conveyor import Registry, http, queue, step
from conveyor.errors import StepDeclarationError


def test_motia_path_params_become_starlette_params():
    assert http("get", "/orders/:orderId/items/:itemId").path == "/orders/{orderId}/items/{itemId}"
    assert http("GET", "/orders/{orderId}").method == "GET"


def test_bad_method_and_path_are_refused():
    with pytest.raises(StepDeclarationError, match="method 'FETCH'"):
        http("FETCH", "/x")
    with pytest.raises(StepDeclarationError, match="must start with '/'"):
        http("GET", "x")


def test_step_registers_with_its_triggers_and_settings():
    registry = Registry()

    @step(name="Worker", triggers=[queue("t")], enqueues=["u"], registry=registry, max_retries=9)
    async def handler(data, ctx):
        return None

    declared = registry.get("Worker")
    assert declared.is_async
    assert declared.runs_on_workers
    assert declared.settings.max_retries == 9
    assert declared.settings.model_fields_set == {"max_retries"}
    assert registry.subscribers() == {"t": [declared]}


def test_duplicate_and_invalid_names_are_refused():
    registry = Registry()
    step(name="Same", triggers=[queue("t")], registry=registry)(lambda d, c: None)
    with pytest.raises(StepDeclarationError, match="declared twice"):
        step(name="Same", triggers=[queue("t")], registry=registry)(lambda d, c: None)
    with pytest.raises(StepDeclarationError, match="must start with a letter"):
        step(name="bad name", triggers=[queue("t")], registry=registry)
    with pytest.raises(StepDeclarationError, match="has no triggers"):
        step(name="Lonely", triggers=[], registry=registry)
