"""The one error type bad user input raises; the CLI turns it into a one-line message and exit 2."""


class ConfigError(ValueError):
    """Bad input: an unknown name, an out-of-range or malformed value, a missing resource."""
