"""benchmarks/gpu.sh (make bench-gpu): the dry run exercises every stage on the CPU; without CUDA the real run refuses.

Nothing here asserts on time: the dry run's numbers only have to exist, be finite and be positive.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_gpu  # noqa: E402  (imports no torch at module level)

BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"
CONV_SHAPES, POOL_SHAPES, NORM_SHAPES = 8, 4, 4
MODELS = {"ResNet-18", "ResNet-50", "MobileNetV2"}
MODES = {"float32", "AMP bfloat16", "AMP bfloat16 + channels_last"}
# the dry run trains plain AMP bfloat16 (NCHW) for MobileNetV2 only (slow CPU bfloat16 backward otherwise)
DRY_TRAIN_ROWS = {(m, mode) for m in MODELS for mode in MODES if mode != "AMP bfloat16" or m == "MobileNetV2"}


def _environment() -> dict:
    env = dict(os.environ)
    env["PYTHON"] = sys.executable  # used by gpu.sh when the checkout has no .venv
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "lib"), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def _section(text: str) -> str:
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "the GPU section's markers must occur once each"
    return text[text.index(BEGIN):text.index(END) + len(END)]


def _outside(text: str) -> str:
    return text[:text.index(BEGIN)] + text[text.index(END) + len(END):]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run through gpu.sh, into a copy of RESULTS.md (so the section replacement is exercised too)."""
    folder = tmp_path_factory.mktemp("bench-gpu")
    output = folder / "RESULTS.md"
    shutil.copy(BENCHMARKS / "RESULTS.md", output)
    result = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", "--output", str(output)],
                            cwd=folder, env=_environment(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"dry run failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result, output, json.loads(output.with_suffix(".json").read_text())


@pytest.mark.slow
def test_dry_run_replaces_only_the_gpu_section(dry_run):
    result, output, _ = dry_run
    original = (BENCHMARKS / "RESULTS.md").read_text()
    written = output.read_text()
    assert _outside(written) == _outside(original)
    section = _section(written)
    assert "DRY RUN on the CPU" in section and "Not measured yet" not in section
    assert re.search(r"^\[\d\d:\d\d:\d\d \+ *\d+\.\d+s\] ", result.stdout, re.MULTILINE), "progress lines carry times"


@pytest.mark.slow
def test_dry_run_markdown_has_every_table(dry_run):
    _, output, _ = dry_run
    section = _section(output.read_text())
    for op in ("conv2d", "max_pool2d", "avg_pool2d", "batch_norm2d"):
        for dtype in ("float32", "bfloat16"):
            assert f"#### {op}, {dtype}" in section
    tables = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in {"ResNet-18", "ResNet-50", "MobileNetV2"} and len(cells) == 6:
            tables[(cells[0], cells[1])] = cells
    assert set(tables) == DRY_TRAIN_ROWS
    for cells in tables.values():
        assert float(cells[2]) > 0 and float(cells[3]) > 0 and cells[4].endswith("x")
        assert cells[5] in {"met", "MISSED"}
    targets = section[section.index("### Targets"):section.index("### Tests")]
    assert targets.count("<= 1.3x") == 2 and targets.count("<= 1.5x") == 2 and ">= 0.95x" in targets


@pytest.mark.slow
def test_dry_run_json_has_finite_positive_numbers(dry_run):
    _, _, results = dry_run
    assert results["dry_run"] is True and not results["errors"]
    for key in ("date", "device", "torch", "torchvision", "commit"):
        assert results["meta"][key]
    ops = results["ops"]
    expected = {"conv2d": CONV_SHAPES, "max_pool2d": POOL_SHAPES, "avg_pool2d": POOL_SHAPES,
                "batch_norm2d": NORM_SHAPES}
    for op, count in expected.items():
        for dtype in ("float32", "bfloat16"):
            assert len([r for r in ops if r["op"] == op and r["dtype"] == dtype]) == count, (op, dtype)
    for row in ops:
        for key in ("torch_fwd_s", "torch_bwd_s", "ops_fwd_s", "ops_bwd_s", "ratio_fwd", "ratio_bwd",
                    "ratio_fwd_bwd"):
            assert _positive(row[key]), (row["op"], row["shape"], key, row[key])
        assert math.isclose(row["ratio_fwd"], row["ops_fwd_s"] / row["torch_fwd_s"])
    targets = {(s["op"], s["dtype"]): s["target"] for s in results["ops_summary"]}
    assert targets[("conv2d", "float32")] == targets[("conv2d", "bfloat16")] == 1.3
    assert targets[("batch_norm2d", "float32")] == targets[("batch_norm2d", "bfloat16")] == 1.5
    train = results["train"]
    assert {(r["title"], r["mode"]) for r in train} == DRY_TRAIN_ROWS
    for row in train:
        for source in ("cnnbook", "torchvision"):
            assert _positive(row[f"{source} images/s"]) and math.isfinite(row[f"{source} final loss"])
        assert math.isclose(row["ratio"], row["cnnbook images/s"] / row["torchvision images/s"])
        assert row["met"] == (row["ratio"] >= 0.95)
    ops_rows = [r for r in train if "ops ratio" in r]
    assert [(r["title"], r["mode"]) for r in ops_rows] == [("ResNet-18", "float32")]
    assert _positive(ops_rows[0]["cnnbook, layers=cnnbook images/s"])


@pytest.mark.slow
def test_dry_run_collects_only_cuda_cases(dry_run):
    _, _, results = dry_run
    tests = results["tests"]
    assert "-m cuda" in tests["command"] and "--collect-only" in tests["command"]
    assert tests["ok"] and tests["counts"]["collected"] > 0 and tests["counts"]["deselected"] > 0
    ids = [line for line in tests["tail"] if "::" in line]
    assert ids and all("cuda" in line for line in ids), ids


def test_real_run_refuses_without_cuda(tmp_path):
    output = tmp_path / "RESULTS.md"
    env = _environment()
    env["CUDA_VISIBLE_DEVICES"] = ""  # hides any GPU, so this holds on a CUDA machine too
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_gpu.py"), "--output", str(output)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "no CUDA device" in result.stderr and "--dry-run" in result.stderr
    assert not output.exists() and not output.with_suffix(".json").exists()


def test_results_md_has_one_gpu_section_showing_the_command():
    section = _section((BENCHMARKS / "RESULTS.md").read_text())
    assert "make bench-gpu" in section and "bash benchmarks/gpu.sh" in section


def test_write_section_replaces_between_markers_or_appends(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    bench_gpu.write_section(path, f"{BEGIN}\nnew\n{END}")
    assert path.read_text() == f"# Results\n\nbefore\n\n{BEGIN}\nnew\n{END}\n\nafter\n"
    path.write_text("# Results\n\nno section yet\n")
    bench_gpu.write_section(path, f"{BEGIN}\nnew\n{END}")
    assert path.read_text() == f"# Results\n\nno section yet\n\n{BEGIN}\nnew\n{END}\n"
    fresh = tmp_path / "sub" / "fresh.md"
    bench_gpu.write_section(fresh, f"{BEGIN}\nnew\n{END}")
    assert fresh.read_text() == f"{BEGIN}\nnew\n{END}\n"


@pytest.mark.parametrize("lines, summary, counts", [
    (["...", "214 passed, 1637 deselected, 2 warnings in 31.20s"], "214 passed, 1637 deselected, 2 warnings in 31.20s",
     {"passed": 214, "deselected": 1637, "warnings": 2}),
    (["F.", "FAILED tests/test_ops.py::test_x[cuda] - assert 1 == 2", "1 failed, 1 passed, 1 error in 2.00s"],
     "1 failed, 1 passed, 1 error in 2.00s", {"failed": 1, "passed": 1, "errors": 1}),
    (["tests/a.py::t[cuda]", "", "214/1851 tests collected (1637 deselected) in 26.05s"],
     "214/1851 tests collected (1637 deselected) in 26.05s", {"collected": 214, "total": 1851, "deselected": 1637}),
    (["crashed before a summary"], "(no summary line)", {}),
])
def test_pytest_summary_is_parsed(lines, summary, counts):
    assert bench_gpu._pytest_summary(lines) == (summary, counts)
