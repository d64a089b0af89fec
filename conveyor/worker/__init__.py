"""The worker side: steps as Dramatiq actors (:mod:`.actors`), the middleware that retries,
dead-letters, prioritises and filters their messages (:mod:`.middleware`), and the failure
records of dead messages (:mod:`.failures`)."""
