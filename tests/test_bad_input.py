"""Bad requests against the real gateway: each gets its documented 4xx in JSON, and changes nothing.

Every case is sent to a gateway process running against RabbitMQ and workers (the ``system``
fixture). The answer must be the case's status with a JSON body whose ``error`` names the
problem (and whose ``fields`` name the failing fields, where there are some); no order or
stock may be stored, no handler that stores may run, and the gateway must log no crash.
At the end, RabbitMQ's count of messages published to ProcessOrder's queue shows that the
bad requests queued nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest

from tests.gateway_helpers import settled_publish_count
from tests.helpers import step_queue

JSON = "application/json"

#: A body the order flow accepts; cases spoil one part of it.
ITEM: dict[str, Any] = {"productId": "sku-1", "quantity": 2, "price": 9.99}
ORDER: dict[str, Any] = {"customerId": "cust-1", "items": [ITEM]}


def order(**changes: Any) -> bytes:
    """The valid order with top-level keys changed (a value of ``...`` drops the key)."""
    return _encode({**ORDER, **changes})


def order_item(**changes: Any) -> bytes:
    """The valid order with its one item's keys changed (a value of ``...`` drops the key)."""
    return order(items=[_drop({**ITEM, **changes})])


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(_drop(value)).encode()


def _drop(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not ...}


def chunked(total: int, chunk: int = 64 * 1024) -> Callable[[], Iterator[bytes]]:
    """A body of ``total`` bytes sent in chunks, without a Content-Length."""

    def chunks() -> Iterator[bytes]:
        yield b'{"customerId": "'
        for _ in range(total // chunk):
            yield b"x" * chunk
        yield b'", "items": []}'

    return chunks


@dataclass(frozen=True)
class Bad:
    """One bad request and the answer it must get."""

    id: str
    method: str
    path: str
    status: int
    #: Must appear in the answer's ``error``.
    error: str
    body: bytes | Callable[[], Iterator[bytes]] | None = None
    content_type: str | None = JSON
    #: The answer's ``fields`` must name these (and may name more: an unknown key, say).
    fields: tuple[str, ...] = ()
    #: For a 405: what the Allow header must list.
    allow: tuple[str, ...] = ()


INVALID = "Invalid request body"
MALFORMED = "Malformed JSON"
NOT_JSON = "Content-Type must be application/json"
TOO_LARGE = "larger than the limit"
MIB = 1024 * 1024

CASES = [
    # Malformed and truncated JSON.
    Bad("truncated-object", "POST", "/orders", 400, MALFORMED, b'{"customerId": "c", "items": ['),
    Bad("truncated-string", "POST", "/orders", 400, MALFORMED, b'{"customerId": "cu'),
    Bad("single-quotes", "POST", "/orders", 400, MALFORMED, b"{'customerId': 'c', 'items': []}"),
    Bad("trailing-comma", "POST", "/orders", 400, MALFORMED, order()[:-1] + b",}"),
    Bad("form-data-labelled-json", "POST", "/orders", 400, MALFORMED, b"customerId=c&items=1"),
    Bad("two-documents", "POST", "/orders", 400, MALFORMED, order() + order()),
    Bad("empty-body", "POST", "/orders", 400, "Request body is empty", b""),
    Bad("whitespace-body", "POST", "/orders", 400, "Request body is empty", b" \r\n\t "),
    Bad("malformed-json-to-get", "GET", "/orders/anything", 400, MALFORMED, b'{"oops": '),
    Bad("malformed-stock", "PUT", "/inventory/sku-1", 400, MALFORMED, b'{"stock": 5'),
    # Wrong types.
    Bad("array-not-object", "POST", "/orders", 400, INVALID, b"[]", fields=("(root)",)),
    Bad("null-body", "POST", "/orders", 400, INVALID, b"null", fields=("(root)",)),
    Bad("customer-id-number", "POST", "/orders", 400, INVALID, order(customerId=42), fields=("customerId",)),
    Bad("items-object", "POST", "/orders", 400, INVALID, order(items={"0": ITEM}), fields=("items",)),
    Bad("quantity-word", "POST", "/orders", 400, INVALID, order_item(quantity="two"), fields=("items.0.quantity",)),
    Bad("quantity-fraction", "POST", "/orders", 400, INVALID, order_item(quantity=1.5), fields=("items.0.quantity",)),
    Bad("price-list", "POST", "/orders", 400, INVALID, order_item(price=[1]), fields=("items.0.price",)),
    Bad("stock-word", "PUT", "/inventory/sku-1", 400, INVALID, b'{"stock": "ten"}', fields=("stock",)),
    Bad("stock-fraction", "PUT", "/inventory/sku-1", 400, INVALID, b'{"stock": 2.5}', fields=("stock",)),
    # Missing and extra fields.
    Bad("missing-customer", "POST", "/orders", 400, INVALID, order(customerId=...), fields=("customerId",)),
    Bad("missing-items", "POST", "/orders", 400, INVALID, order(items=...), fields=("items",)),
    Bad("empty-object", "POST", "/orders", 400, INVALID, b"{}", fields=("customerId", "items")),
    Bad("missing-price", "POST", "/orders", 400, INVALID, order_item(price=...), fields=("items.0.price",)),
    Bad("missing-stock", "PUT", "/inventory/sku-1", 400, INVALID, b"{}", fields=("stock",)),
    Bad(
        "extra-field",
        "POST",
        "/orders",
        400,
        INVALID,
        order(coupon="FREE-STUFF"),
        fields=("coupon",),
    ),
    # Empty and huge strings.
    Bad("empty-customer", "POST", "/orders", 400, INVALID, order(customerId=""), fields=("customerId",)),
    Bad("empty-product", "POST", "/orders", 400, INVALID, order_item(productId=""), fields=("items.0.productId",)),
    Bad("no-items", "POST", "/orders", 400, INVALID, order(items=[]), fields=("items",)),
    Bad(
        "huge-customer-id",
        "POST",
        "/orders",
        400,
        INVALID,
        order(customerId="c" * (512 * 1024)),
        fields=("customerId",),
    ),
    Bad("body-over-limit", "POST", "/orders", 413, TOO_LARGE, order(customerId="c" * (10 * MIB))),
    Bad("chunked-body-over-limit", "POST", "/orders", 413, TOO_LARGE, chunked(10 * MIB)),
    Bad("stock-body-over-limit", "PUT", "/inventory/sku-1", 413, TOO_LARGE, b'{"stock": 1, "x": "' + b"y" * 2 * MIB),
    # Numbers out of range, NaN and Infinity.
    Bad("quantity-zero", "POST", "/orders", 400, INVALID, order_item(quantity=0), fields=("items.0.quantity",)),
    Bad("quantity-negative", "POST", "/orders", 400, INVALID, order_item(quantity=-3), fields=("items.0.quantity",)),
    Bad("price-zero", "POST", "/orders", 400, INVALID, order_item(price=0), fields=("items.0.price",)),
    Bad("price-negative", "POST", "/orders", 400, INVALID, order_item(price=-0.01), fields=("items.0.price",)),
    Bad("stock-negative", "PUT", "/inventory/sku-1", 400, INVALID, b'{"stock": -1}', fields=("stock",)),
    Bad(
        "stock-beyond-int64",
        "PUT",
        "/inventory/sku-1",
        400,
        INVALID,
        b'{"stock": 9223372036854775808}',
        fields=("stock",),
    ),
    Bad("stock-overflows-to-inf", "PUT", "/inventory/sku-1", 400, MALFORMED, b'{"stock": 1e999}'),
    Bad("price-nan", "POST", "/orders", 400, MALFORMED, order_item(price=0.5).replace(b"0.5", b"NaN")),
    Bad("price-infinity", "POST", "/orders", 400, MALFORMED, order_item(price=0.5).replace(b"0.5", b"Infinity")),
    Bad("stock-minus-infinity", "PUT", "/inventory/sku-1", 400, MALFORMED, b'{"stock": -Infinity}'),
    Bad(
        "integer-over-4300-digits",
        "POST",
        "/orders",
        400,
        MALFORMED,
        order_item(quantity=1).replace(b'"quantity": 1', b'"quantity": 1' + b"0" * 5000),
    ),
    Bad(
        "price-overflows-to-inf",
        "POST",
        "/orders",
        400,
        MALFORMED,
        order_item(price=0.5).replace(b"0.5", b"1e999"),
    ),
    Bad(
        "total-overflows-to-inf",
        "POST",
        "/orders",
        400,
        INVALID,
        order_item(price=1e308, quantity=10),
        fields=("items.0.price",),
    ),
    Bad(
        "quantity-too-big-for-a-float",
        "POST",
        "/orders",
        400,
        INVALID,
        order_item(quantity=10**400),
        fields=("items.0.quantity",),
    ),
    # Deep nesting.
    Bad("nested-10000-arrays", "POST", "/orders", 400, "nested deeper than 64", b"[" * 10_000 + b"]" * 10_000),
    Bad("nested-10000-objects", "POST", "/orders", 400, "nested deeper than 64", b'{"a":' * 10_000 + b"}" * 10_000),
    Bad(
        "nested-65-in-a-field",
        "POST",
        "/orders",
        400,
        "nested deeper than 64",
        order(customerId=...).replace(b"{", b'{"customerId": ' + b"[" * 65 + b"]" * 65 + b", ", 1),
    ),
    # Wrong content types.
    Bad("text-plain", "POST", "/orders", 415, NOT_JSON, order(), content_type="text/plain"),
    Bad("no-content-type", "POST", "/orders", 415, NOT_JSON, order(), content_type=None),
    Bad("form-urlencoded", "POST", "/orders", 415, NOT_JSON, b"customerId=c", "application/x-www-form-urlencoded"),
    Bad("xml", "PUT", "/inventory/sku-1", 415, NOT_JSON, b"<stock>5</stock>", content_type="application/xml"),
    Bad("json-lookalike", "POST", "/orders", 415, NOT_JSON, order(), content_type="application/jsonp"),
    # Unicode edge cases.
    Bad("lone-high-surrogate", "POST", "/orders", 400, INVALID, order(customerId="\ud800"), fields=("customerId",)),
    Bad(
        "lone-low-surrogate",
        "POST",
        "/orders",
        400,
        INVALID,
        order_item(productId="\udfff"),
        fields=("items.0.productId",),
    ),
    Bad(
        "raw-nul-in-string", "POST", "/orders", 400, MALFORMED, order(customerId="a\x00b").replace(b"\\u0000", b"\x00")
    ),
    Bad("invalid-utf8", "POST", "/orders", 400, MALFORMED, order(customerId="caf\xe9").replace(b"\\u00e9", b"\xe9")),
    Bad("emoji-quantity", "POST", "/orders", 400, INVALID, order_item(quantity="🚀"), fields=("items.0.quantity",)),
    Bad(
        "rtl-override-before-number",
        "POST",
        "/orders",
        400,
        MALFORMED,
        order_item(quantity=7).replace(b": 7", ": \u202e7".encode()),
    ),
    Bad(
        "emoji-keys", "POST", "/orders", 400, INVALID, '{"🧾": "c", "📦": []}'.encode(), fields=("customerId", "items")
    ),
    # Path traversal and odd path parameters.
    Bad(
        "traversal-encoded-slashes",
        "GET",
        "/orders/..%2F..%2Fetc%2Fpasswd",
        404,
        "No route for GET /orders/../../etc/passwd",
    ),
    Bad(
        "traversal-encoded-dots",
        "GET",
        "/orders/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        404,
        "No route for GET /orders/../../etc/passwd",
    ),
    Bad("traversal-on-put", "PUT", "/inventory/..%2F..%2Fetc%2Fpasswd", 404, "No route for PUT", b'{"stock": 1}'),
    Bad("nul-order-id", "GET", "/orders/%00", 400, "contains control characters", fields=("orderId",)),
    Bad(
        "nul-product-id",
        "PUT",
        "/inventory/%00",
        400,
        "contains control characters",
        b'{"stock": 1}',
        fields=("productId",),
    ),
    Bad("empty-product-id", "PUT", "/inventory/", 404, "No route for PUT /inventory/", b'{"stock": 1}'),
    # Unknown routes and methods.
    Bad("unknown-route", "GET", "/nope", 404, "No route for GET /nope"),
    Bad("unknown-nested-route", "POST", "/orders/o-1/cancel", 404, "No route for POST /orders/o-1/cancel", order()),
    Bad("admin-when-off", "GET", "/_admin/stats", 404, "No route for GET /_admin/stats"),
    Bad("delete-orders", "DELETE", "/orders", 405, "Method DELETE is not allowed on /orders", allow=("POST",)),
    Bad("patch-order", "PATCH", "/orders/o-1", 405, "Method PATCH is not allowed", order(), allow=("GET",)),
    Bad(
        "post-inventory", "POST", "/inventory/sku-1", 405, "Method POST is not allowed", b'{"stock": 1}', allow=("PUT",)
    ),
]


def _params() -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CASES]


class Baseline(NamedTuple):
    orders: int
    published: int


@pytest.fixture(scope="module")
def baseline(system, rabbitmq) -> Baseline:
    """The stored orders and ProcessOrder's publish count before the first case."""
    published = settled_publish_count(rabbitmq.management_url, step_queue("ProcessOrder"))
    return Baseline(orders=len(system.state.list("orders")), published=published)


def footprint(system) -> dict[str, int]:
    """What a request that did something leaves behind: stored values, handler and crash log lines."""
    log = system.log("gateway")
    return {
        "orders": len(system.state.list("orders")),
        "inventory": len(system.state.list("inventory")),
        "CreateOrder ran": log.count("Received new order"),
        "SetInventory ran": log.count("Stock set"),
        "crashes logged": log.count("Unhandled error"),
    }


def send(system, case: Bad):
    headers = {"content-type": case.content_type} if case.content_type else {}
    content = case.body() if callable(case.body) else case.body
    return system.http.request(case.method, case.path, content=content, headers=headers)


def test_ids_are_unique_and_there_are_enough_cases():
    assert len({case.id for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", _params())
def test_bad_request_gets_its_4xx_and_changes_nothing(system, baseline, case: Bad):
    before = footprint(system)
    response = send(system, case)

    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"].startswith(JSON)
    assert response.headers["x-request-id"]
    body = response.json()
    assert case.error in body["error"], body
    if case.fields:
        assert set(case.fields) <= {f["field"] for f in body["fields"]}, body
        assert all(f["reason"] for f in body["fields"]), body
    if case.allow:
        assert set(case.allow) <= {m.strip() for m in response.headers["allow"].split(",")}
    assert footprint(system) == before


def test_a_method_the_http_parser_does_not_know_is_refused_before_the_app(system, baseline):
    """``BREW /orders`` never reaches the gateway's app: uvicorn's fast parser (httptools) only
    knows the standard methods and answers ``400`` in plain text itself. Nothing runs or is stored."""
    before = footprint(system)
    response = system.http.request("BREW", "/orders", content=order(), headers={"content-type": JSON})
    assert response.status_code == 400
    assert footprint(system) == before


def test_valid_unicode_is_kept_not_refused(system):
    """The contrast to the unicode cases above: emoji, right-to-left text and an escaped NUL are data."""
    customer = "קוני \u202e🛒 ok\u0000"
    response = system.http.post("/orders", json={**ORDER, "customerId": customer})
    assert response.status_code == 200, response.text
    order_id = response.json()["orderId"]
    assert system.http.get(f"/orders/{order_id}").json()["customerId"] == customer


def test_process_order_queue_took_no_message_from_a_bad_request(system, rabbitmq, baseline: Baseline):
    """RabbitMQ counted one ProcessOrder message per order stored since the first case, and no more.

    Each case checked that it stored no order; so the bad requests queued nothing. A valid
    order sent here proves the count is fresh.
    """
    response = system.http.post("/orders", json=ORDER)
    assert response.status_code == 200, response.text
    stored = len(system.state.list("orders")) - baseline.orders
    published = settled_publish_count(
        rabbitmq.management_url, step_queue("ProcessOrder"), at_least=baseline.published + 1
    )
    assert published - baseline.published == stored
