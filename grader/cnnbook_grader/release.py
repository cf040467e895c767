"""Generate the student versions in exercises/ from the instructor sources in solutions/.

``python -m cnnbook_grader.release --all`` (what ``make exercises`` runs)
regenerates every assignment; ``--check`` only reports whether exercises/ is
in sync. Generation runs ``nbgrader generate_assignment`` in a scratch copy of
the course, so it never touches the instructor's gradebook and a failure never
leaves exercises/ half written.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["REPO_ROOT", "assignments", "nbgrader_env", "run_nbgrader", "generate", "differences", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def nbgrader_env() -> dict[str, str]:
    """The environment nbgrader needs: it runs ``alembic`` from PATH, so put this
    interpreter's scripts folder (the project's .venv/bin) first."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}


def run_nbgrader(args: list[str], course: Path) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course folder ``course``; never raises on failure."""
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        capture_output=True,
        text=True,
        env=nbgrader_env(),
        stdin=subprocess.DEVNULL,
    )


def assignments(root: Path = REPO_ROOT) -> list[str]:
    """Names of the assignments: the folders of ``solutions/`` holding a notebook."""
    source = root / "solutions"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def _ignore_scratch(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n in {".ipynb_checkpoints", "__pycache__"}]


def generate(names: list[str], destination: Path, root: Path = REPO_ROOT) -> Path:
    """Run nbgrader on a scratch copy of the course; write student versions under ``destination/<name>``.

    Returns ``destination``. Raises ``RuntimeError`` with nbgrader's output if it fails.
    """
    destination = Path(destination)
    with tempfile.TemporaryDirectory(prefix="cnnbook-release-") as scratch:
        course = Path(scratch)
        shutil.copy2(root / "nbgrader_config.py", course / "nbgrader_config.py")
        for name in names:
            shutil.copytree(root / "solutions" / name, course / "solutions" / name, ignore=_ignore_scratch)
        for name in names:
            result = run_nbgrader(["generate_assignment", name, "--force", "--log-level=WARN"], course)
            if result.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.stdout}\n{result.stderr}")
        destination.mkdir(parents=True, exist_ok=True)
        for name in names:
            target = destination / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(course / "exercises" / name, target)
    return destination


def differences(expected: Path, actual: Path) -> list[str]:
    """Paths (relative) that differ between two folder trees, or exist in only one."""
    problems: list[str] = []

    def walk(comparison: filecmp.dircmp, prefix: str) -> None:
        problems.extend(f"{prefix}{n} (only in generated)" for n in comparison.left_only)
        problems.extend(f"{prefix}{n} (only in exercises/)" for n in comparison.right_only)
        for n in comparison.common_files:
            if not filecmp.cmp(Path(comparison.left) / n, Path(comparison.right) / n, shallow=False):
                problems.append(f"{prefix}{n} (content differs)")
        for n, sub in comparison.subdirs.items():
            walk(sub, f"{prefix}{n}/")

    walk(filecmp.dircmp(expected, actual, ignore=[".ipynb_checkpoints", "__pycache__"]), "")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="assignments to generate (default: all)")
    parser.add_argument("--all", action="store_true", help="generate every assignment in solutions/")
    parser.add_argument("--check", action="store_true", help="only report whether exercises/ is in sync")
    args = parser.parse_args(argv)
    known = assignments()
    names = known if args.all or not args.names else args.names
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown assignment(s) {unknown}; solutions/ has {known}")
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            generated = generate(names, Path(scratch))
            problems = [f"{n}/{p}" for n in names for p in differences(generated / n, REPO_ROOT / "exercises" / n)
                        ] if all((REPO_ROOT / "exercises" / n).exists() for n in names) else ["exercises/ is missing an assignment"]
        for problem in problems:
            print(f"out of sync: {problem}")
        print("exercises/ is in sync with solutions/" if not problems else "run `make exercises` to regenerate")
        return 1 if problems else 0
    generate(names, REPO_ROOT / "exercises")
    for name in names:
        print(f"generated exercises/{name}/ from solutions/{name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
