"""Messaging on RabbitMQ: the broker (:mod:`.broker`), the publisher every enqueue goes through
(:mod:`.publisher`), pipelined confirms for event loops (:mod:`.async_publisher`), delay queues
(:mod:`.delays`), queue declaration (:mod:`.queues`) and the operator tools' own connections
(:mod:`.connections`)."""
