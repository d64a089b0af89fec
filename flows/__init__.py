"""The application's flows: one folder per flow, one module per step."""
