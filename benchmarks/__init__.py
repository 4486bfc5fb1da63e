"""`make bench`: measured numbers for docs/benchmarks.md (machine and date in its header)."""
