"""`make lab`: JupyterLab on a student's own copies of the exercises.

1. Every file of `exercises/` that is not yet in `my-exercises/` is copied there;
   a file that is already there is never touched, so a student's work survives
   `make lab` again and `git pull` never has to merge into it (`my-exercises/`
   is ignored by git). Assignments released later are copied on the next run.
2. A Jupyter configuration folder of this launch only (`.student-lab/`, ignored
   by git) hides nbgrader's instructor tools: the lab plugins *Create
   Assignment*, *Formgrader* and *Course List* are disabled in the page config,
   and the formgrader and course-list server extensions are switched off.
   Validate and the assignment list stay. An instructor's own `jupyter lab`
   reads none of it and keeps every tool.
3. JupyterLab serves the repository and opens on `my-exercises/` (with
   `--allow-root` when run as root), so an exercise's links to its chapter
   (`../../book/<chapter>.md`) open the chapter's source beside it.

Run it as `make lab` (which first creates .venv) or `.venv/bin/python tools/student_lab.py`;
extra arguments go to `jupyter lab` (`make lab LAB_FLAGS=--no-browser`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXERCISES = REPO / "exercises"
COPIES = REPO / "my-exercises"
LAB_CONFIG = REPO / ".student-lab"

# nbgrader 0.9.6 ships these JupyterLab plugins (`jupyter labextension list` shows
# @jupyter/nbgrader; the ids are its plugins') and these server extensions
# (`jupyter server extension list`). Students keep validate-assignment and
# assignment-list; the rest are instructor tools.
INSTRUCTOR_LAB_PLUGINS = (
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:course-list",
)
INSTRUCTOR_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
)
SKIPPED = {".ipynb_checkpoints", "__pycache__"}


def copy_exercises(source: Path = EXERCISES, copies: Path = COPIES) -> tuple[list[Path], list[Path]]:
    """Copy every file of `source` missing from `copies`; return (copied, kept) as paths under `copies`."""
    copied, kept = [], []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or SKIPPED & set(relative.parts):
            continue
        target = copies / relative
        if target.exists():
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(target)
    return copied, kept


def write_student_config(config_dir: Path = LAB_CONFIG) -> Path:
    """Write the Jupyter configuration that hides the instructor tools; return its folder.

    `labconfig/page_config.json` is what `jupyter labextension disable --level=user`
    writes into JUPYTER_CONFIG_DIR; `jupyter_server_config.json` sets the server
    extensions, and settings given there win over the environment's `config.d`
    entries that enable them.
    """
    (config_dir / "labconfig").mkdir(parents=True, exist_ok=True)
    page_config = {"disabledExtensions": {plugin: True for plugin in INSTRUCTOR_LAB_PLUGINS}}
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps(page_config, indent=2) + "\n")
    server_config = {"ServerApp": {"jpserver_extensions": {name: False for name in INSTRUCTOR_SERVER_EXTENSIONS}}}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(server_config, indent=2) + "\n")
    return config_dir


def lab_command(copies: Path = COPIES, extra: list[str] | None = None, as_root: bool | None = None) -> list[str]:
    """The `jupyter lab` command line: the repository served, opened on the copies.

    JupyterLab refuses to run as root without --allow-root.
    """
    if as_root is None:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    root = copies.parent
    command = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url=/lab/tree/{copies.relative_to(root).as_posix()}",
    ]
    if as_root:
        command.append("--allow-root")
    return command + list(extra or [])


def lab_environment(config_dir: Path = LAB_CONFIG, base: dict | None = None) -> dict[str, str]:
    """The environment of the launch: this folder is the Jupyter configuration folder."""
    environment = dict(os.environ if base is None else base)
    environment["JUPYTER_CONFIG_DIR"] = str(config_dir)
    # the student's lab settings and workspaces live beside that configuration
    environment.setdefault("JUPYTERLAB_SETTINGS_DIR", str(config_dir / "lab" / "user-settings"))
    environment.setdefault("JUPYTERLAB_WORKSPACES_DIR", str(config_dir / "lab" / "workspaces"))
    return environment


def main(argv: list[str]) -> None:
    copied, kept = copy_exercises()
    write_student_config()
    where = COPIES.relative_to(REPO)
    print(f"Your exercises are in {where}/ ({COPIES}).")
    if copied:
        print(f"  copied {len(copied)} new file(s) from exercises/")
    if kept:
        print(f"  kept {len(kept)} file(s) you already have: your work there is never overwritten")
    print("  To start an exercise again from scratch, delete your copy and run `make lab` again.")
    command = lab_command(extra=argv)
    print("Starting JupyterLab:", " ".join(command), flush=True)
    os.execve(command[0], command, lab_environment())


if __name__ == "__main__":
    main(sys.argv[1:])
