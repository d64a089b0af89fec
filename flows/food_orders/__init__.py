"""The food-orders flow (Motia's background-jobs guide): POST /food-orders, background processing,
daily cleanup, a batch processor, a dead-letter handler and high-value orders."""
