"""The order-processing flow: POST /orders, process, update inventory, notify, GET /orders/{orderId}."""
