"""The one error type bad user input raises; the CLI turns it into a one-line message and exit 2.
Also what every message goes through: names checked before they become paths, and URLs with
their passwords masked."""

import re
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """Bad input: an unknown name, an out-of-range or malformed value, a missing resource."""


class NoOpMethod(ConfigError):
    """A method that would change nothing in a run (e.g. layer norm where D has no layer to
    normalise): a single run refuses it; a suite leaves that pair out and says so."""


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(kind: str, name: object) -> str:
    """Experiment and suite names become file and folder names (reports/<name>.md, artifacts,
    offline journals): a safe character set, no path separators, no leading dot. Every name
    that reaches a path goes through here, whether typed or read back from a file."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{kind} name {name!r} is not allowed; allowed: letters, digits, "
            "'.', '_', '-' (at most 100, not starting with '.', '_' or '-')"
        )
    return name


def safe_url(url: str) -> str:
    """`url` without its password, for every message, log line and report."""
    return mask_secrets(url, url)


# scheme://USER:PASSWORD@ where USER may be empty and PASSWORD holds anything but whitespace up
# to the last '@' of the word: a password may hold quotes, ':', '/', or a raw '@' that should
# have been percent-encoded, and masking a little too much is harmless where too little leaks.
_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@'\"]*:)\S*@")
# libpq-style keyword strings (host=... password=...) that drivers may echo in their errors
_KEYWORD = re.compile(r"\b(password|passwd|pwd)=(\"[^\"]*\"|'[^']*'|[^\s&;,]+)", re.IGNORECASE)
MIN_SECRET = 4  # a shorter known password is not searched for in free text (it would garble it)


def mask_secrets(text: str, *known_urls: str) -> str:
    """`text` with the password of every `scheme://user:password@` (and `password=...`)
    replaced by ***; the passwords of `known_urls` are also masked wherever else they appear
    (raw or percent-decoded), e.g. in a driver's error that quotes its connection string."""
    for url in known_urls:
        for secret in _passwords(url):
            text = text.replace(secret, "***")
    text = _CREDENTIALS.sub(r"\1***@", text)
    return _KEYWORD.sub(r"\1=***", text)


def _passwords(url: str) -> set[str]:
    try:
        password = urlsplit(url).password
    except ValueError:  # e.g. a malformed port: the regex still masks the URL form
        return set()
    if not password:
        return set()
    return {p for p in (password, unquote(password)) if len(p) >= MIN_SECRET}
