#!/usr/bin/env bash
# The development loop: the whole system as run.sh starts it, restarted when a step's file is saved.
source "$(dirname "$0")/env.sh" ""
exec python -m devtools.launcher --reload "$@"
