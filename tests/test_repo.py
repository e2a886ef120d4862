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
