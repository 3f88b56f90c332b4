"""Performance benchmarks of issue 6 (run ``python -m benchmarks --help``; see README.md here)."""
