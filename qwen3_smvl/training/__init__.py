"""A training run's parts: config keys and checks, its processor, what trains, resume, guards."""


class ConfigError(ValueError):
    """A config that must not start a run; the message names the file and key.

    Defined here, not in train_config.py, because the modules that check a part of the config
    (trainable.py) are themselves used by train_config.py's checks."""
