"""Benchmarks on the loopback test bed: `python -m bench.switch` and `python -m bench.peers`."""
