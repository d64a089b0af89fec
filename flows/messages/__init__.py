"""The messages flow (Motia's background-worker example): POST /messages, a priority-aware worker,
a completion notification on a state trigger, and a nightly cleanup."""
