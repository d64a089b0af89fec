"""The order-processing flow as the thinnest code a user would write instead of Conveyor: bench/orders.py's yardstick.

The seed's four steps, written as the seed writes them, on plain Dramatiq and Starlette:

- ``app.py``: a Starlette app whose ``POST /orders`` validates the body with pydantic, stores
  the order and enqueues ``process_order`` (CreateOrder); served by uvicorn, one process
  (``python -m bench.glue.app --port P``);
- ``actors.py``: ``process_order``, ``update_inventory`` and ``send_notification`` as plain
  ``@dramatiq.actor`` functions on a ``RabbitmqBroker`` with publisher confirms and Dramatiq's
  default middleware (``dramatiq bench.glue.actors -p 2 -t 8``);
- ``state.py``: a key-value table in a SQLite file (WAL, one connection per thread).

Where the seed itself would misbehave, the glue follows it on purpose: UpdateInventory reads
the stock, then writes stock - quantity, so concurrent orders lose decrements (the benchmark
counts them). Two departures, both also in Conveyor's flow: no 100 ms sleep in ProcessOrder,
and a notification keyed by its order (the seed's ``notif-<Date.now()>`` overwrites
notifications made in the same millisecond, and the benchmark counts one per order).

The processes read their settings from the environment: the broker URL and ``max_priority``
(``bench/environment.py``, as ``bench/plain_actors.py`` does) and the SQLite file
(:data:`~bench.glue.state.STATE_PATH_ENV`).
"""

#: The actors' queues (``actors.py``), apart from Conveyor's.
QUEUES = ("glue-process-order", "glue-update-inventory", "glue-send-notification")
