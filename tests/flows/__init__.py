"""Steps that exist only for the test suite: probes that fail, sleep, fan out and tick."""
