"""Run a command in a sandbox: bubblewrap + resource limits + an unprivileged user.

What the sandboxed process sees and may do:

- the system read-only (``--ro-bind / /``), a private ``/tmp`` and ``/dev``,
  its own process tree (``--unshare-pid``) and a network namespace with only
  loopback up (``--unshare-net``): the kernel and its client talk over
  127.0.0.1 inside the sandbox, and nothing outside is reachable;
- the course folder, the repository and home folders replaced by empty
  tmpfs mounts, with only the Python installation and the library bound back
  read-only: no solutions, no gradebook, no other student, no oracle;
- its working copy at ``/tmp/work``, the only place it can write to;
- limits (``prlimit``): address space, CPU seconds, file size, number of
  processes (counted for a dedicated uid per concurrent sandbox, so a fork
  bomb in one submission cannot starve another), and a wall-clock limit
  enforced by the parent, which kills the whole sandbox.

As root (CI, course servers), bubblewrap runs without a user namespace and
``setpriv`` drops to the sandbox uid inside; as an ordinary user, bubblewrap's
user namespace is used and the process limit is counted for that user.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 61000
SLOTS = 256
INSIDE = "/tmp/work"


@dataclass
class Limits:
    memory_bytes: int = 4 * 2**30  # address space per process
    cpu_seconds: int = 600  # per process
    file_bytes: int = 64 * 2**20  # largest file a process may write
    processes: int = 64  # processes of the sandbox uid
    wall_seconds: float = 600  # the whole sandbox


@dataclass
class Outcome:
    returncode: int
    timed_out: bool
    seconds: float
    stderr: str


def available() -> bool:
    return shutil.which("bwrap") is not None and shutil.which("prlimit") is not None


@contextmanager
def uid_slot():
    """A sandbox uid no other running sandbox on this machine uses (a lock file per uid)."""
    lock_dir = Path("/tmp/cnnbook-sandbox-slots")
    lock_dir.mkdir(exist_ok=True)
    os.chmod(lock_dir, 0o700)
    while True:
        for slot in range(SLOTS):
            handle = open(lock_dir / f"{slot}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield UID_BASE + slot
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(0.2)


def _hidden_paths(extra_hidden: list[Path]) -> list[str]:
    from .release import REPO_ROOT

    candidates = [REPO_ROOT, Path.home(), Path("/root"), Path("/home"), *extra_hidden]
    seen = []
    for path in candidates:
        path = Path(path).resolve()
        if path.exists() and path.is_dir() and str(path) != "/" and str(path) not in seen:
            seen.append(str(path))
    # mount parents before children
    return sorted(seen, key=lambda p: p.count("/"))


def _bound_back(hidden: list[str]) -> list[str]:
    import cnnbook

    import cnnbook_grader

    # the interpreter, the student-facing library and the grader (its harness runs in the sandbox)
    wanted = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(cnnbook.__file__).resolve().parents[1],
              Path(cnnbook_grader.__file__).resolve().parents[1]}
    # the interpreter may live behind symlinks (pyenv, venv -> base)
    wanted.add(Path(os.path.realpath(sys.executable)).parents[1])
    keep = []
    for path in sorted(wanted, key=lambda p: str(p).count("/")):
        text = str(path)
        if any(text == h or text.startswith(h + "/") for h in hidden) and not any(
            text.startswith(k + "/") or text == k for k in keep
        ):
            keep.append(text)
    return keep


def command(workdir: Path, argv: list[str], limits: Limits, uid: int, hide: list[Path] = ()) -> list[str]:
    """The full command line that runs ``argv`` sandboxed with ``workdir`` at /tmp/work."""
    hidden = _hidden_paths(list(hide))
    root = os.geteuid() == 0
    nproc = limits.processes
    if not root:  # the limit counts every process of this user
        nproc += len([p for p in Path("/proc").iterdir() if p.name.isdigit()])
    cmd = [
        "prlimit", f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}",
        f"--fsize={limits.file_bytes}", f"--nproc={nproc}", "--core=0", "--",
        "bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp",
    ]
    if not root:
        cmd += ["--unshare-user"]
    for path in hidden:
        cmd += ["--tmpfs", path]
    for path in _bound_back(hidden):
        # bubblewrap would create the missing parents with the host's modes (0700 for /root/.pyenv)
        parent = Path(path).parent
        parents = []
        while str(parent) not in hidden and str(parent) != "/":
            parents.append(str(parent))
            parent = parent.parent
        for directory in reversed(parents):
            cmd += ["--perms", "0755", "--dir", directory]
        cmd += ["--ro-bind", path, path]
    cmd += ["--bind", str(workdir), INSIDE, "--chdir", INSIDE,
            "--setenv", "HOME", INSIDE, "--setenv", "TMPDIR", "/tmp",
            "--setenv", "IPYTHONDIR", "/tmp/.ipython", "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp/.jupyter",
            "--setenv", "JUPYTER_CONFIG_DIR", "/tmp/.jupyter", "--setenv", "MPLCONFIGDIR", "/tmp/.mpl",
            "--setenv", "MPLBACKEND", "Agg", "--setenv", "PYTHONHASHSEED", "0", "--setenv", "PYTHONNOUSERSITE", "1",
            "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "MKL_NUM_THREADS", "1",
            "--setenv", "OPENBLAS_NUM_THREADS", "1", "--unsetenv", "NBGRADER_EXECUTION"]
    if root:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--"]
    else:
        cmd += ["--"]
    return cmd + argv


def run(workdir: Path, argv: list[str], limits: Limits, hide: list[Path] = ()) -> Outcome:
    """Run ``argv`` in the sandbox; kill everything in it after ``limits.wall_seconds``."""
    if not available():
        raise RuntimeError("the grading sandbox needs bubblewrap and prlimit: apt-get install bubblewrap util-linux")
    workdir = Path(workdir)
    with uid_slot() as uid:
        if os.geteuid() == 0:
            for path in [workdir, *workdir.rglob("*")]:
                os.chown(path, uid, uid, follow_symlinks=False)
        start = time.monotonic()
        process = subprocess.Popen(
            command(workdir, argv, limits, uid, hide), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        timed_out = False
        try:
            _, stderr = process.communicate(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
        # bubblewrap's child is init of the sandbox's pid namespace and dies with it
        # (--die-with-parent), which kills every process left in the sandbox.
    return Outcome(process.returncode, timed_out, time.monotonic() - start,
                   stderr.decode(errors="replace")[-4000:])
