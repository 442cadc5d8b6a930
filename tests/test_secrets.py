"""Passwords in URLs never reach a message: one masking function for every form a URL takes
(empty user, quotes, percent-encoding, '@' or '/' in the password, user only, no password), in
the URL itself, inside a message, and quoted back by a driver."""

import pytest

from bench.__main__ import main
from bench.errors import mask_secrets, safe_url
from tests.servers import free_port

FORMS = [
    # (url, what safe_url gives)
    ("postgresql://bench:secret@db:5432/x", "postgresql://bench:***@db:5432/x"),
    ("http://:secret@host:5000", "http://:***@host:5000"),  # empty user
    ("postgresql://u:se'cret@db/x", "postgresql://u:***@db/x"),  # a single quote
    ('postgresql://u:se"cret@db/x', "postgresql://u:***@db/x"),  # a double quote
    ("postgresql://u:p%40ss%3Asecret@db/x", "postgresql://u:***@db/x"),  # percent-encoded
    ("postgresql://u:p@secret@db/x", "postgresql://u:***@db/x"),  # a raw '@' (sqlalchemy: '@p')
    ("postgresql://u:se/cret@db/x", "postgresql://u:***@db/x"),  # a raw '/'
    ("postgresql+psycopg://u:secret@db/x", "postgresql+psycopg://u:***@db/x"),  # a driver
    ("mysql://u:@db/x", "mysql://u:***@db/x"),  # an empty password
    ("http://user@host:5000", "http://user@host:5000"),  # user only: nothing secret
    ("http://host:5000/path", "http://host:5000/path"),  # no credentials at all
    ("sqlite:///tmp/runs/mlflow.db", "sqlite:///tmp/runs/mlflow.db"),
]


@pytest.mark.parametrize("url,masked", FORMS, ids=[u for u, _ in FORMS])
def test_every_url_form_is_masked(url, masked):
    assert safe_url(url) == masked
    for text in (f"storage {url!r} cannot be opened", f'uri="{url}", next', f"({url})"):
        out = mask_secrets(text)
        assert "secret" not in out and "cret" not in out, out
        assert masked in out or masked.replace("'", "\\'") in out, out


def test_a_known_url_s_password_is_masked_wherever_a_driver_quotes_it():
    url = "postgresql://u:p%40ssw0rd@db/x"
    text = "connection failed: password=p@ssw0rd rejected for dsn 'user=u password=p%40ssw0rd'"
    out = mask_secrets(text, url)
    assert "ssw0rd" not in out and "password=***" in out


@pytest.mark.parametrize(
    "flag,url",
    [
        ("--tracking-uri", "postgresql://:secret@127.0.0.1:{port}/x"),
        ("--tracking-uri", "postgresql://bench:sec'ret@127.0.0.1:{port}/x"),
        ("--storage", "postgresql://bench:p%40secret@127.0.0.1:{port}/x"),
        ("--storage", 'postgresql://:se"cret@127.0.0.1:{port}/x'),
    ],
)
def test_unreachable_stores_are_named_without_their_password(
    flag, url, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    cmd = ["sweep", "--dataset", "ring8", "--method", "norm_clip"]
    if flag == "--storage":
        cmd.append("--no-track")
    code = main([*cmd, flag, url.format(port=free_port())])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2 and out.out == "" and len(lines) == 1, lines
    assert "cret" not in lines[0] and "***@127.0.0.1" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []
