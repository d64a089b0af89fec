#!/usr/bin/env bash
# Run every test: unit tests, and integration tests against a RabbitMQ node the suite starts itself.
source "$(dirname "$0")/env.sh" "test"
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null; then
  echo "Installing RabbitMQ from Debian's packages (the integration tests need a real broker)..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
ruff check .
mypy
exec python -m pytest "$@"
