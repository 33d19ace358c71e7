"""Board deploy, sensor simulators, the README demo and ops helpers."""
