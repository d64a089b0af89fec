"""The job-queues flow (the message-queues pattern): email, image and webhook queues, an event bus
whose events fan out to handlers, and a priority queue for emails."""
