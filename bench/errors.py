"""The one error type bad user input raises; the CLI turns it into a one-line message and exit 2."""

import re


class ConfigError(ValueError):
    """Bad input: an unknown name, an out-of-range or malformed value, a missing resource."""


class NoOpMethod(ConfigError):
    """A method that would change nothing in a run (e.g. layer norm where D has no layer to
    normalise): a single run refuses it; a suite leaves that pair out and says so."""


def safe_url(url: str) -> str:
    """`url` without its password, for every message, log line and report."""
    return mask_secrets(url)


_CREDENTIALS = re.compile(r"(\w[\w+.-]*://[^:/@\s]+:)[^\s'\"]*@")


def mask_secrets(text: str) -> str:
    """Every `scheme://user:password@` in `text` with the password replaced by ***."""
    return _CREDENTIALS.sub(r"\1***@", text)
