"""Benchmark support: the step-kind registry, the benchmark run, the PyTorch peer."""
