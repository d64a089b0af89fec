#!/usr/bin/env bash
# Run every test: unit tests, in-process flow tests, and integration tests against RabbitMQ nodes
# and PostgreSQL servers the suite starts itself, and browser tests in Debian's Chromium. With arguments naming
# tests, runs just those:
# bash scripts/test.sh tests/test_x.py
source "$(dirname "$0")/env.sh" "test"
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null; then
  echo "Installing RabbitMQ from Debian's packages (the integration tests need a real broker)..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v pg_ctl >/dev/null; then
  # The tests start servers of their own on free ports (devtools/postgres.py): a system cluster the
  # package may start (port 5432) is not used.
  echo "Installing PostgreSQL from Debian's packages (the tests start throwaway servers)..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  # The browser tests (tests/browser) drive Debian's chromium through Playwright, never a downloaded build.
  echo "Installing Chromium from Debian's packages (the browser tests run in it)..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
ruff check .
mypy
for arg in "$@"; do
  if [[ "$arg" != -* ]]; then exec python -m pytest "$@"; fi
done
# Three test files at a time: most integration tests wait on processes and RabbitMQ, not on the CPU.
# The fault run restarts RabbitMQ under load, so it runs alone, after the rest; then the cluster suite
# (3 RabbitMQ nodes, PostgreSQL, two of each process, killed in turn), alone too.
python -m pytest -n 3 --dist loadfile -m "not serial and not cluster and not browser" "$@"
# Chromium on its own: Playwright's sync API runs an event loop in the test's thread while a browser is open.
python -m pytest -m browser "$@"
python -m pytest -m serial "$@"
exec python -m pytest -m cluster -s "$@"
