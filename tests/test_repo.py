import pytest

from conftest import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && pytest'
    assert command in readme
    assert command in (REPO / ".ci" / "run").read_text()


def test_no_dataset_pixels_are_tracked():
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if f.startswith("datasets/") and f != "datasets/README.md"]
    # nor a data root or pixel cache made elsewhere (a run from another working directory creates one there)
    assert not [f for f in tracked if "/datasets/" in f or "/.cache/" in f or f.endswith(".npz")]


def test_space_requirements_match_the_package_dependencies():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line.strip() for line in (REPO / "spaces" / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == deps


def test_space_readme_has_the_spaces_yaml_header():
    head = (REPO / "spaces" / "README.md").read_text().split("---")[1]
    for key in ("sdk: gradio", "app_file: app.py", "sdk_version:"):
        assert key in head


def test_torchvision_retry_hook_stubs_the_failing_meta_registrations(tmp_path, monkeypatch):
    """The import hook `import ferx` installs (instead of importing torchvision): a package whose
    `_meta_registrations` fails with `RuntimeError: <name>::...` (a CUDA torchvision beside a CPU
    torch) imports with that module stubbed; any other error still surfaces."""
    import sys

    from ferx._torchvision_compat import install

    for name, message in (("fakevision", "operator fakevision::nms does not exist"), ("othervision", "other")):
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(f"from {name} import _meta_registrations\nOK = True\n")
        (pkg / "_meta_registrations.py").write_text(f"raise RuntimeError({message!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    install("fakevision")
    install("othervision")
    import fakevision

    assert fakevision.OK and not hasattr(sys.modules["fakevision._meta_registrations"], "__file__")  # the stub
    with pytest.raises(RuntimeError, match="other"):
        import othervision  # noqa: F401
    for name in [m for m in sys.modules if m.split(".")[0] in ("fakevision", "othervision")]:
        del sys.modules[name]


def test_python_dash_m_ferx_is_the_ferx_command(tmp_path):
    """Where the ``ferx`` script is not on the PATH, ``python -m ferx app`` said "No module named ferx.__main__"."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ferx", "evaluate"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2 and done.stderr.startswith("usage: ferx evaluate")
    assert "the following arguments are required: checkpoint, --dataset" in done.stderr


def test_readme_names_every_ferx_environment_variable_the_code_reads():
    """Each FERX_* variable that ferx, the app or the tests read is in the README (FERX_CACHE_DIR, FERX_CONCURRENCY
    and FERX_MAX_UPLOAD_MB were not), and each one the README names is read somewhere."""
    import re

    code = "\n".join(p.read_text() for folder in ("ferx", "webapp", "tests") for p in (REPO / folder).rglob("*.py")
                     if p.name != "test_repo.py")
    read = set(re.findall(r"\bFERX_[A-Z][A-Z_]*[A-Z]\b", code))
    named = set(re.findall(r"\bFERX_[A-Z][A-Z_]*[A-Z]\b", (REPO / "README.md").read_text()))
    assert read - named == set(), "read by the code, not in the README"
    assert named - read == set(), "in the README, read by nothing"


def test_readme_layout_names_every_folder_and_core_module():
    """The README's Layout lists every top-level folder and every module and package of ferx/ (it lacked twelve
    modules, ferx/checkpoint.py among them); private modules (ferx/_*.py) are one line."""
    import subprocess

    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    folders = {f.split("/")[0] + "/" for f in tracked if "/" in f and not f.startswith(".")}
    core = {"/".join(f.split("/")[:2]) + ("/" if f.count("/") > 1 else "") for f in tracked if f.startswith("ferx/")}
    core = {m for m in core if not m.split("/")[1].startswith("_")}
    assert [name for name in sorted(folders | core) if name not in layout] == []
