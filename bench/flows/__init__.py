"""Steps that exist only for the benchmarks (``[project] flows = ["bench.flows"]``)."""
