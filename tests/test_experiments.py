"""The experiment scripts behind the chapters' logged curves: they run, and the committed logs are complete."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_degradation_script_runs_a_tiny_experiment_and_logs_it(tmp_path):
    degradation = _load("degradation")
    out = tmp_path / "log.json"
    degradation.main(["--train-size", "40", "--test-size", "20", "--epochs", "1", "--batch-size", "16",
                      "--image-size", "14", "--seeds", "0", "--models", "plain20", "resnet20",
                      "--window", "1", "--out", str(out)])
    log = json.loads(out.read_text())
    assert [run["model"] for run in log["runs"]] == ["plain20", "resnet20"]
    run = log["runs"][0]
    assert run["steps_per_epoch"] == 3 and len(run["curve_train_error"]) == 3
    assert len(run["epoch_test_error"]) == 1 and 0.0 <= run["epoch_test_error"][0] <= 1.0
    assert log["settings"]["image_size"] == 14 and log["train_size"] == 40


def test_the_committed_degradation_log_has_every_model_and_several_seeds():
    log = json.loads((REPO / "book" / "data" / "degradation.json").read_text())
    seeds = {}
    for run in log["runs"]:
        seeds.setdefault(run["model"], set()).add(run["seed"])
    assert set(seeds) == {"plain20", "resnet20", "plain56", "resnet56"}
    assert all(len(model_seeds) >= 2 for model_seeds in seeds.values()), seeds
    assert log["command"].startswith("OMP_NUM_THREADS=1 .venv/bin/python experiments/degradation.py")


@pytest.mark.slow
def test_detection_script_runs_a_tiny_experiment_and_logs_it(tmp_path):
    detection = _load("detection")
    out = tmp_path / "log.json"
    detection.main(["--train-size", "24", "--unet-train-size", "16", "--test-size", "8", "--detector-epochs", "2",
                    "--unet-epochs", "1", "--fcn-epochs", "1", "--window", "1", "--out", str(out)])
    log = json.loads(out.read_text())
    assert len(log["detector"]["test_map50"]) == 2 and len(log["detector"]["loss"]) == 2  # 24 / 32: 1 step per epoch
    assert all(0.0 <= value <= 1.0 for value in log["detector"]["test_map50"])
    assert set(log["unet"]) == {"with_skips", "without_skips"} and len(log["unet"]["with_skips"]["test_miou"]) == 1
    assert len(log["fcn"]["test_miou"]) == 1 and log["settings"]["train_size"] == 24


def test_the_committed_detection_log_is_complete():
    log = json.loads((REPO / "book" / "data" / "detection.json").read_text())
    assert log["command"].startswith("OMP_NUM_THREADS=1 .venv/bin/python experiments/detection.py")
    settings = log["settings"]
    assert len(log["detector"]["test_map50"]) == settings["detector_epochs"] >= 10
    for key in ("with_skips", "without_skips"):
        assert len(log["unet"][key]["test_miou"]) == settings["unet_epochs"]
    assert len(log["fcn"]["test_miou"]) == settings["fcn_epochs"]
    assert settings["train_size"] >= 4000
def test_transfer_script_runs_a_tiny_experiment_and_logs_it(tmp_path):
    script = _load("transfer")
    out = tmp_path / "transfer.json"
    script.main(["--tiny", "--tasks", "faces", "fashion", "--strategies", "scratch", "probe", "full",
                 "--labels", "5", "--seeds", "0", "--out", str(out)])
    log = json.loads(out.read_text())
    assert {(run["task"], run["strategy"]) for run in log["runs"]} == {
        ("faces", "scratch"), ("faces", "probe"), ("faces", "full"), ("fashion", "scratch"), ("fashion", "probe")}
    assert all(0.0 <= run["accuracy"] <= 1.0 for run in log["runs"])
    assert log["settings"]["tiny"] is True


def test_the_committed_transfer_log_has_every_task_strategy_and_several_seeds():
    log = json.loads((REPO / "book" / "data" / "transfer.json").read_text())
    seeds = {}
    for run in log["runs"]:
        seeds.setdefault((run["task"], run["strategy"], run["per_class"]), set()).add(run["seed"])
    assert {task for task, _, _ in seeds} == {"textures", "faces", "digits", "fashion"}
    assert {strategy for task, strategy, _ in seeds if task == "textures"} == {
        "scratch", "probe", "last_blocks", "full", "gradual"}
    assert all(len(s) >= 3 for s in seeds.values()), seeds
    assert log["command"].startswith("OMP_NUM_THREADS=1 .venv/bin/python experiments/transfer.py")
