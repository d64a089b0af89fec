"""A small flow whose every kind of hop the tracing tests follow: HTTP, fan-out, state triggers, a
condition, retries into a dead letter, and cron."""
