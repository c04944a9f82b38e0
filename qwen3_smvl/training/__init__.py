"""A training run's parts: config keys and checks, its processor, what trains, resume, guards."""
