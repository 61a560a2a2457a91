"""Learn: the architectures, one training protocol, the run registry, metrics and the comparison report."""
