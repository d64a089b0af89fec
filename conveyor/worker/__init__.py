"""The worker side: steps as Dramatiq actors (:mod:`.actors`), the middleware that retries,
dead-letters, prioritises and filters their messages (:mod:`.middleware`), the failure
records of dead messages (:mod:`.failures`), and how a worker process stops on signals and
when its master dies (:mod:`.shutdown`)."""
