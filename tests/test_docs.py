"""The documentation site (mkdocs.yml, docs/) builds in strict mode: a broken link or anchor fails."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = str(Path(sys.executable).parent / "mkdocs")


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(site)], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_the_docs_site_builds_in_strict_mode(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    import yaml

    nav = [next(iter(item.values())) for item in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]]
    assert {"results.md", "configuration.md", "serving.md", "scaling-out.md", "benchmarks.md"} <= set(nav)
    for page in nav:  # every page in the navigation is built, and every Markdown page is in it
        built = "index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html"
        assert (tmp_path / "site" / built).exists(), page
    assert set(nav) == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_a_broken_anchor_or_page_fails_the_build(tmp_path):
    for broken in ("[x](benchmarks.md#no-such-section)", "[x](no-such-page.md)"):
        copy = tmp_path / broken.split("(")[1].strip(")").replace("#", "_")
        shutil.copytree(ROOT / "docs", copy / "docs")
        shutil.copy(ROOT / "mkdocs.yml", copy)
        with open(copy / "docs" / "results.md", "a") as fh:
            fh.write(f"\n{broken}\n")
        done = build(copy, copy / "site")
        target = broken.split("(")[1].rstrip(")")
        assert done.returncode != 0 and target in done.stderr, (broken, done.stderr[-2000:])
