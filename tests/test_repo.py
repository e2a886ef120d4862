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
