"""The README and docs/ stay navigable: every relative link resolves, and the README's code map names every module."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _unfenced(text: str) -> str:
    """The markdown without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The markdown without code blocks and inline code spans (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to hyphens, -1, -2 ... for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in _unfenced(path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_anchor_rule_matches_github():
    page = ROOT / "docs" / "performance.md"
    assert "precision-per-cpu" in _anchors(page)
    assert "amd-epyc-zen-4-avx512_bf16-auto-picks-bf16" in _anchors(page)  # backticks and parentheses dropped


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def _code_map() -> list[str]:
    """The modules and folders (relative to mtl_lab/) listed in the README's code map section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Code map\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^  ([\w/]+(?:\.py|/))\s", section, flags=re.M)


def test_the_readme_code_map_covers_every_module():
    package = ROOT / "mtl_lab"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py"}
    listed = _code_map()
    folders = [entry for entry in listed if entry.endswith("/")]
    uncovered = [m for m in modules if m not in listed and not any(m.startswith(f) for f in folders)]
    assert sorted(uncovered) == [], "add each module, or its folder, to the README's code map"
    missing = [entry for entry in listed if not (package / entry).exists()]
    assert missing == [], "the README's code map names modules or folders that do not exist"
    for folder in folders:  # a folder's line names each of its modules (and sub-folders)
        block = (ROOT / "README.md").read_text().split(f"  {folder}", 1)[1].split("\n  mtl_lab/", 1)[0]
        block = re.split(r"\n  [\w/]+(?:\.py|/)\s", block, maxsplit=1)[0]
        for child in sorted((package / folder).iterdir()):
            name = child.stem if child.suffix == ".py" else child.name
            if child.name.startswith("__") or (child.is_dir() and f"{folder}{child.name}/" in listed):
                continue
            assert re.search(rf"\b{name}\b", block), f"the code map's {folder} line does not name {name}"
    assert len(listed) == len(set(listed)), "one line per module or folder"


def test_readme_smoke_minutes_are_the_recorded_ones(tmp_path):
    """The notebook table's minutes and the line under it come from results/smoke-notebooks.json (what
    ``notebooks run --inplace`` measured), CPU named: no hand-written minute counts."""
    import json

    from mtl_lab.course.runner import TIMINGS, smoke_minutes_lines

    readme = (ROOT / "README.md").read_text()
    assert smoke_minutes_lines(readme) == readme, "python -m mtl_lab report rewrites them"
    record = json.loads(TIMINGS.read_text())
    assert f"Smoke minutes: {record['cpu']}," in readme
    for stem, minutes in record["minutes"].items():
        assert re.search(rf"^\| `{stem}` \| [^|]+ \| {minutes:.1f} \|", readme, re.MULTILINE), stem
    # the rewrite itself, on other numbers (the check can fail), a dotted CPU name, twice (it settles)
    record.update(minutes={"00_setup_and_data": 1.25}, total_minutes=1.25, cpu="Intel(R) Xeon(R) CPU @ 2.70GHz")
    (tmp_path / "t.json").write_text(json.dumps(record))
    text = (
        "| notebook | what | smoke min | trains |\n| --- | --- | --- | --- |\n| `00_setup_and_data` | data | 9.9 | nothing |\n"
        "\n| `00_setup_and_data` | not the table | 9.9 |\n\nSmoke minutes: Some CPU, fp32, 2020-01-01. More; [a.md](b.md)\n"
    )
    new = smoke_minutes_lines(text, tmp_path / "t.json")
    assert "| `00_setup_and_data` | data | 1.2 | nothing |" in new and "| not the table | 9.9 |" in new
    assert "Smoke minutes: Intel(R) Xeon(R) CPU @ 2.70GHz, " in new and new.endswith("in all. More; [a.md](b.md)\n")
    assert smoke_minutes_lines(new, tmp_path / "t.json") == new
