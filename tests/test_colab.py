"""Tests for tools/colab.py: badges and the Colab-only install cell, generated from one URL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.tools_loader import load

colab = load("colab")

ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/example-org/fedlearn-course"


def _notebook() -> nbformat.NotebookNode:
    return new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("import fedlearn")],
                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                 "language": "python"}})


def test_repository_url_is_read_from_pyproject() -> None:
    url = colab.repository_url(ROOT / "pyproject.toml")
    assert url.startswith("https://github.com/")


@pytest.mark.parametrize("urls, message", [
    ("", "no 'Repository' entry"),
    ('Repository = "https://gitlab.com/a/b"', "not a GitHub repository URL"),
])
def test_bad_repository_url_is_a_clear_error(tmp_path: Path, urls: str, message: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nname = "x"\n[project.urls]\n{urls}\n', encoding="utf-8")
    with pytest.raises(colab.ColabConfigError, match=message) as err:
        colab.repository_url(pyproject)
    assert str(pyproject) in str(err.value)


def test_trailing_dot_git_is_accepted(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project.urls]\nRepository = "{URL}.git"\n', encoding="utf-8")
    assert colab.repository_url(pyproject) == URL


def test_cells_are_inserted_first_and_rerunning_changes_nothing() -> None:
    nb = _notebook()
    once = colab.with_colab_cells(nb, URL, "notebooks/01_x.ipynb")
    twice = colab.with_colab_cells(once, URL, "notebooks/01_x.ipynb")
    assert nbformat.writes(once) == nbformat.writes(twice)
    assert [c.metadata["tags"] for c in once.cells[:2]] == [["colab-badge"], ["colab-install"]]
    assert once.cells[0].source == (
        f"[![Open In Colab]({colab.BADGE_IMAGE})](https://colab.research.google.com/github/"
        "example-org/fedlearn-course/blob/main/notebooks/01_x.ipynb)")
    assert [c.source for c in once.cells[2:]] == [c.source for c in nb.cells]


def test_changed_url_updates_the_cells_in_place() -> None:
    old = colab.with_colab_cells(_notebook(), "https://github.com/old/place", "notebooks/a.ipynb")
    new = colab.with_colab_cells(old, URL, "notebooks/a.ipynb")
    assert len(new.cells) == len(old.cells)
    assert "old/place" not in nbformat.writes(new)
    assert URL in new.cells[1].source


def test_cli_check_fails_until_applied_then_passes(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text(f'[project.urls]\nRepository = "{URL}"\n',
                                             encoding="utf-8")
    path = tmp_path / "notebooks" / "01_x.ipynb"
    nbformat.write(_notebook(), path)
    args = ["--pyproject", str(tmp_path / "pyproject.toml")]
    assert colab.main([*args, "--check"]) == 1
    assert colab.main(args) == 0
    first = path.read_bytes()
    assert colab.main([*args, "--check"]) == 0
    assert colab.main(args) == 0 and path.read_bytes() == first


def test_every_course_notebook_has_the_current_badge_and_install_cell() -> None:
    """Runs the tool's own check on notebooks/ (and notebooks/zh/): fails until it is applied.

    Fix with `python tools/colab.py`, which writes the cells from [project.urls] Repository.
    """
    url = colab.repository_url(ROOT / "pyproject.toml")
    notebooks = colab.course_notebooks(ROOT)
    assert notebooks
    stale = colab.stale_notebooks(notebooks, url, ROOT)
    assert not stale, ("Colab cells missing or out of date (run `python tools/colab.py`): "
                       + ", ".join(p.name for p in stale))
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        rel = path.relative_to(ROOT).as_posix()
        assert nb.cells[0].source == colab.badge_source(url, rel)
        assert colab.colab_url(url, rel) in nb.cells[0].source


_RECORDER = textwrap.dedent("""
    import subprocess, sys, types
    calls = []
    def record(cmd, *args, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)
    subprocess.run = subprocess.Popen = subprocess.call = subprocess.check_call = record
    {colab}
    before = set(sys.modules)
    exec(compile(open(sys.argv[1]).read(), "install-cell", "exec"), {{"__name__": "__main__"}})
    print(repr(calls))
""")


def _run_install_cell(tmp_path: Path, on_colab: bool) -> tuple[subprocess.CompletedProcess, list]:
    cell = tmp_path / "cell.py"
    cell.write_text(colab.install_source(URL), encoding="utf-8")
    fake = ('sys.modules["google"] = types.ModuleType("google"); '
            'sys.modules["google.colab"] = types.ModuleType("google.colab")') if on_colab else ""
    runner = tmp_path / "runner.py"
    runner.write_text(_RECORDER.format(colab=fake), encoding="utf-8")
    done = subprocess.run([sys.executable, str(runner), str(cell)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done, eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 (our own repr)


def test_install_cell_is_a_no_op_outside_colab(tmp_path: Path) -> None:
    # The cell's source itself, run in a fresh interpreter: nothing installed, nothing printed.
    done = subprocess.run([sys.executable, "-c", colab.install_source(URL)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    _, calls = _run_install_cell(tmp_path, on_colab=False)
    assert calls == []


def test_install_cell_on_colab_installs_fedlearn_but_not_torch(tmp_path: Path) -> None:
    """With google.colab importable the same cell runs pip (recorded here, not executed)."""
    _, calls = _run_install_cell(tmp_path, on_colab=True)
    assert len(calls) == 2
    first, second = calls
    assert "--no-deps" in first and f"fedlearn @ git+{URL}.git@main" in first
    deps = [a for a in second[second.index("--ignore-requires-python") + 1:]]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in deps}
    assert "opacus" in {n.split("[")[0] for n in names}
    assert not names & {"torch", "torchvision", "jupyterlab", "ipykernel"}
    assert not any("extra" in d for d in deps)  # the dev tools are not installed on Colab


def test_readme_colab_links_follow_the_repository_url(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("[![Open In Colab](x.svg)](https://colab.research.google.com/github/old/"
                      "repo/blob/main/notebooks/01_x.ipynb)\n", encoding="utf-8")
    assert colab.stale_readmes(URL, tmp_path) == [readme]
    fixed = colab.with_readme_links(readme.read_text(encoding="utf-8"), URL)
    assert colab.colab_url(URL, "notebooks/01_x.ipynb") in fixed
    readme.write_text(fixed, encoding="utf-8")
    assert colab.stale_readmes(URL, tmp_path) == []


def test_the_readme_badge_points_at_the_configured_repository() -> None:
    url = colab.repository_url(ROOT / "pyproject.toml")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert colab.colab_url(url, "notebooks/01_what_is_federated_learning.ipynb") in text
    assert colab.stale_readmes(url, ROOT) == []
