"""A small flow for the tests of conveyor.testing: HTTP, a failing step with a dead-letter topic,
a delayed step, a cron step, a state trigger and a priority probe."""
