"""Independent NumPy/SciPy re-derivations of official metrics, shared by tests and benchmarks."""
