"""The documentation stays true to the tree: relative links and images resolve (anchors in
markdown files name an existing heading), code fences are balanced and closed on a line of their
own, every registered method and data set of the `bench` package is documented, the README stays
a front page (under 16 KB), and nothing refers to files outside the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("**/*.md"))]
MAX_README_BYTES = 16 * 1024
PARENT_PATH = re.compile(r"(?:\.\./)+[\w./-]*")  # any path that climbs folders
MD_PATH = re.compile(r"(?:[\w.-]+/)*docs/[\w.-]+\.md")  # a docs page named in any text

FENCE = re.compile(r"^\s*(`{3,})(.*)$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code spans removed."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif len(m.group(1)) >= len(fence) and not m.group(2).strip():
                fence = None
            continue
        if fence is None:
            out.append((number, INLINE_CODE.sub("", line)))
    return out


def fence_problems(text: str) -> list[str]:
    """Unbalanced fences, and closing fences with text after their backticks: such a line does
    not close the block, so the rest of the page renders as code."""
    problems, open_at, fence = [], 0, None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m is None:
            continue
        ticks, rest = m.groups()
        if fence is None:
            open_at, fence = number, ticks
        elif len(ticks) >= len(fence):
            if rest.strip():  # not a closing fence: the block goes on, as it renders
                problems.append(f"line {number}: text after a closing fence: {rest.strip()!r}")
            else:
                fence = None
    if fence is not None:
        problems.append(f"line {open_at}: a fence that is never closed")
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation removed (but - and
    _), spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"[`*~]|<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if m is None:
            continue
        base = slug(m.group(2))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    # the fenced-code spans are dropped; inline code as well (a `[x](y)` there is not a link)
    raw = [(n, m.group(1)) for n, line in prose_lines(text) for m in LINK.finditer(line)]
    return [(n, target) for n, target in raw if not EXTERNAL.match(target)]


def test_the_pages_exist():
    assert README.is_file()
    names = {p.name for p in DOCS.glob("*.md")}
    expected = {"user-guide.md", "methods.md", "metrics-and-protocols.md", "reliability.md",
                "performance.md"}  # fmt: skip
    assert expected <= names, sorted(expected - names)
    assert {"README.md", "index.md"} & names, "docs/ needs an index (README.md or index.md)"


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Relative links of `page` that name no file, a file outside `root`, or (in a markdown
    file) a heading that does not exist."""
    broken = []
    for number, target in links(page):
        where, _, anchor = target.partition("#")
        dest = (page.parent / where).resolve() if where else page
        if not dest.exists():
            broken.append(f"line {number}: {target} (no such file)")
        elif root not in (dest, *dest.parents):
            broken.append(f"line {number}: {target} (outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor.lower() not in anchors(dest):
            broken.append(f"line {number}: {target} (no heading #{anchor} in {dest.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_relative_links_and_images_resolve(page):
    broken = broken_links(page)
    assert not broken, f"{_id(page)}:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_code_fences_are_balanced_and_closed_cleanly(page):
    problems = fence_problems(page.read_text(encoding="utf-8"))
    assert not problems, f"{_id(page)}:\n" + "\n".join(problems)


def _own(registry) -> list[str]:
    """The names registered by the bench package itself (an installed plugin, such as the
    example in tests/plugin, may add others that these pages need not document)."""
    return [n for n in registry.names() if registry.get(n).__module__.startswith("bench.")]


def _documented(names: list[str], page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [n for n in names if f"`{n}`" not in text]


def test_every_registered_method_is_documented():
    from bench.methods import method_registry

    names = _own(method_registry)
    assert "none" in names and len(names) >= 10
    missing = _documented(names, DOCS / "methods.md")
    assert not missing, f"docs/methods.md does not document: {', '.join(missing)}"


def test_every_registered_data_set_is_documented():
    from bench.datasets import dataset_registry

    names = _own(dataset_registry)
    assert {"ring8", "grid25"} <= set(names)
    missing = _documented(names, DOCS / "metrics-and-protocols.md")
    assert not missing, f"docs/metrics-and-protocols.md does not document: {', '.join(missing)}"


def test_the_readme_is_a_front_page():
    size = README.stat().st_size
    assert size < MAX_README_BYTES, f"README.md is {size:,} bytes; keep it under 16 KB"


def test_the_readme_layout_names_every_module():
    """The README's layout lists every module of bench/ (by file name, or by stem in the
    lists of a package's modules), so a new module cannot go unmentioned."""
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout") :]
    modules = [p for p in (ROOT / "bench").rglob("*.py") if p.name != "__init__.py"]
    missing = [
        _id(p) for p in modules if not re.search(rf"(?<![\w/]){re.escape(p.stem)}\b", layout)
    ]
    assert not missing, f"README.md's layout does not mention: {', '.join(sorted(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_nothing_refers_to_files_outside_the_repository(page):
    """Every path that climbs folders, in links or in text, stays inside the repository."""
    text = page.read_text(encoding="utf-8")
    found = [p for p in PARENT_PATH.findall(text)
             if not (page.parent / p).resolve().is_relative_to(ROOT)]  # fmt: skip
    found += [p for p in MD_PATH.findall(text)  # named pages exist here, beside or at the root
              if not ((page.parent / p).exists() or (ROOT / p).exists())]  # fmt: skip
    assert not found, f"{_id(page)} mentions {found}"


# The checks themselves, on small pieces of markdown.


def test_the_fence_check_finds_text_after_a_closing_fence_and_unclosed_fences():
    assert fence_problems("```python\nx = 1\n```\n") == []
    assert fence_problems("  ```sh\nls\n  ```\n") == []
    assert fence_problems("````\n```\n````\n") == []  # a shorter fence inside a longer one
    bad = fence_problems("```python\nx = 1\n``` Statistics are kept\non the device\n")
    assert len(bad) == 2 and "text after a closing fence" in bad[0] and "never closed" in bad[1]
    assert fence_problems("```\nopen\n") == ["line 1: a fence that is never closed"]


def test_the_link_check_ignores_code_and_external_links(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "[a](x.md) ![i](img/y.png) [web](https://example.org) [m](mailto:a@b.c)\n"
        '`[not](a-link.md)`\n```\n[also not](code.md)\n```\n[anchor](#here) [t](z.md "title")\n'
    )
    assert [t for _, t in links(page)] == ["x.md", "img/y.png", "#here", "z.md"]


def test_the_link_check_finds_missing_files_headings_and_paths_outside(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# Title\n\n## Two words\n")
    page = repo / "README.md"
    page.write_text(
        "[ok](docs/a.md#two-words) [top](#intro) [gone](docs/b.md) [bad](docs/a.md#three)\n"
        "[out](../elsewhere.md)\n\n## Intro\n"
    )
    (tmp_path / "elsewhere.md").write_text("outside\n")
    broken = broken_links(page, root=repo)
    assert [b.split(" (")[1] for b in broken] == [
        "no such file)",
        "no heading #three in a.md)",
        "outside the repository)",
    ]


def test_slugs_follow_github():
    assert slug("Protocols calibrated to convergence") == "protocols-calibrated-to-convergence"
    assert slug("Many runs at once: workers and populations") == (
        "many-runs-at-once-workers-and-populations"
    )
    assert slug("The `UpdateContext` and [links](x.md)") == "the-updatecontext-and-links"
    assert slug("What it has found so far") == "what-it-has-found-so-far"
