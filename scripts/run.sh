#!/usr/bin/env bash
# Run the whole system: gateway on http://127.0.0.1:3000, workers and scheduler.
# Uses RabbitMQ if installed (starting a project-owned node if none runs), else an in-memory broker.
source "$(dirname "$0")/env.sh" ""
exec python -m devtools.launcher "$@"
