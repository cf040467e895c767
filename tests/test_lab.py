"""`make lab` (tools/student_lab.py): the students' JupyterLab.

- the copy step copies the exercises once and never overwrites a student's work,
  and copies assignments released later;
- the command line is the one expected (root needs --allow-root);
- a real JupyterLab, started on a free loopback port with the student
  configuration, serves a page config that disables nbgrader's instructor
  plugins (Create Assignment, Formgrader, Course List) and keeps validate and
  the assignment list; the formgrader's server extension is not loaded; an
  instructor's configuration (without the student folder) disables nothing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location("student_lab", REPO / "tools" / "student_lab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab = _load_tool()


def test_copy_keeps_the_students_work_and_adds_new_assignments(tmp_path):
    source, copies = tmp_path / "exercises", tmp_path / "my-exercises"
    (source / "one").mkdir(parents=True)
    (source / "one" / "one.ipynb").write_text("released one")
    (source / "one" / ".ipynb_checkpoints").mkdir()
    (source / "one" / ".ipynb_checkpoints" / "one-checkpoint.ipynb").write_text("scratch")

    copied, kept = lab.copy_exercises(source, copies)
    assert copied == [copies / "one" / "one.ipynb"] and kept == []
    assert not (copies / "one" / ".ipynb_checkpoints").exists()

    (copies / "one" / "one.ipynb").write_text("the student's answer")
    (source / "one" / "one.ipynb").write_text("released one, corrected")  # a `git pull`
    (source / "two").mkdir()
    (source / "two" / "two.ipynb").write_text("released two")

    copied, kept = lab.copy_exercises(source, copies)
    assert copied == [copies / "two" / "two.ipynb"]
    assert kept == [copies / "one" / "one.ipynb"]
    assert (copies / "one" / "one.ipynb").read_text() == "the student's answer"
    assert (copies / "two" / "two.ipynb").read_text() == "released two"


def test_every_released_exercise_would_be_copied(tmp_path):
    copied, _ = lab.copy_exercises(lab.EXERCISES, tmp_path / "copies")
    released = sorted(p.relative_to(lab.EXERCISES) for p in lab.EXERCISES.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert released, "exercises/ holds no notebook"
    assert sorted(p.relative_to(tmp_path / "copies") for p in copied if p.suffix == ".ipynb") == released


def test_the_copies_are_ignored_by_git():
    for path in ("my-exercises/conv_basics/conv_basics.ipynb", ".student-lab/labconfig/page_config.json"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert result.returncode == 0, f"{path} is not ignored by git"


def test_lab_command_line():
    copies = REPO / "my-exercises"
    command = lab.lab_command(copies, extra=["--no-browser"], as_root=False)
    assert command == [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={REPO}",
        "--LabApp.default_url=/lab/tree/my-exercises",
        "--no-browser",
    ]
    assert "--allow-root" in lab.lab_command(copies, as_root=True)
    environment = lab.lab_environment(Path("/x/.student-lab"), base={"PATH": "/bin"})
    assert environment["JUPYTER_CONFIG_DIR"] == "/x/.student-lab"


def test_make_lab_is_documented():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^lab: \$\(STAMP\)\n\t\$\(BIN\)/python tools/student_lab.py", makefile, re.M)
    help_text = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True).stdout
    assert "make venv" in help_text and "make lab" in help_text
    assert "make lab" in (REPO / "README.md").read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory):
    """A real JupyterLab with the student configuration, on a free loopback port."""
    pytest.importorskip("jupyterlab")
    pytest.importorskip("nbgrader")
    root = tmp_path_factory.mktemp("course")
    copies = root / "my-exercises"
    lab.copy_exercises(lab.EXERCISES, copies)
    config = lab.write_student_config(root / ".student-lab")
    port, token = _free_port(), "cnnbook-test-token"
    command = lab.lab_command(copies, extra=[
        "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
    ])
    environment = lab.lab_environment(config)
    environment["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    log = root / "lab.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=root, env=environment, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base, token, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _page_config(html: str) -> dict:
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the lab page has no jupyter-config-data"
    return json.loads(match.group(1))


@pytest.mark.slow
def test_student_lab_hides_the_instructor_tools(student_lab):
    base, token, log = student_lab
    status, html = _get(f"{base}/lab?token={token}")
    assert status == 200
    config = _page_config(html)
    disabled = set(config.get("disabledExtensions", []))
    assert set(lab.INSTRUCTOR_LAB_PLUGINS) <= disabled, f"disabled: {sorted(disabled)}"
    assert not {p for p in disabled if re.search(r"validate|assignment-list", p)}, f"student tools disabled: {disabled}"
    # the nbgrader lab extension itself is there (so validate and the assignment list are shown)
    federated = {ext["name"] for ext in config.get("federated_extensions", [])}
    assert "@jupyter/nbgrader" in federated, f"nbgrader's lab extension is not installed: {sorted(federated)}"
    # the instructor server extensions are off (their pages are not served), the student ones on
    assert _get(f"{base}/formgrader?token={token}")[0] == 404, "the formgrader is served to students"
    assert _get(f"{base}/formgraders?token={token}")[0] == 404, "the course list is served to students"
    status, body = _get(f"{base}/nbgrader_version?version=0.9.6&token={token}")
    assert status == 200, "nbgrader's assignment-list server extension is not loaded"


def test_instructors_keep_their_tools(tmp_path, monkeypatch):
    """Without the student configuration folder nothing of nbgrader is disabled."""
    pytest.importorskip("jupyterlab_server")
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager
    from jupyterlab_server.config import get_page_config

    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "instructor"))
    page = get_page_config([], str(tmp_path / "settings"))
    disabled = page.get("disabledExtensions", {})
    disabled = set(disabled if isinstance(disabled, list) else [k for k, v in disabled.items() if v])
    assert not disabled & set(lab.INSTRUCTOR_LAB_PLUGINS), f"an instructor's JupyterLab disables {disabled}"
    enabled = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    for name in lab.INSTRUCTOR_SERVER_EXTENSIONS:
        assert enabled.get(name), f"{name} is not enabled for instructors ({jupyter_config_path()})"
