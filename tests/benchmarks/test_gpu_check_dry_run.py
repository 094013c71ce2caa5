"""``benchmarks/gpu_check.sh --dry-run`` on the CPU: every step of the GPU check (the same
scripts, flags and files, at tiny sizes, without the wheel install) runs to exit 0 and the check
writes the files it writes on a GPU, with the machine, the torch version and the date. A missing
file, flag or import of the check fails here instead of on a lent GPU.

Not a timed test: about 2 CPU-minutes (15 Python processes, each importing torch and Detectron2).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = [
    "env",
    "infer_b1_fp32",
    "infer_b1_fp16",
    "infer_b1_static",
    "infer_b32_fp32",
    "infer_b32_fp16",
    "export_onnx",
    "train_speed",
    "demo",
    "tests",
]
FIGURES = ["infer_b1_fp32", "infer_b1_fp16", "infer_b32_fp32", "infer_b32_fp16"]


def test_dry_run_runs_every_step_and_writes_the_records(tmp_path):
    results = tmp_path / "results"
    env = dict(
        os.environ,
        GPU_CHECK_PYTHON=sys.executable,
        DETECTRON2_DATASETS=str(tmp_path / "datasets"),
        CUDA_VISIBLE_DEVICES="",
    )
    env.pop("OUT", None)
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", str(tmp_path / "no_wheels"), str(results)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(results)) == sorted(
        [f"{n}.json" for n in FIGURES]
        + ["infer_b1_static.json", "export_onnx.json", "train_speed.json", "demo_metrics.json"]
        + ["logs.txt", "summary.json"]
    )
    with open(results / "summary.json") as f:
        summary = json.load(f)
    assert list(summary["steps"]) == STEPS
    failed = {k: v for k, v in summary["steps"].items() if v["rc"] != 0}
    logs = (results / "logs.txt").read_text()
    assert not failed, f"{failed}\n{logs[-4000:]}"
    assert summary["failed"] == [] and summary["dry_run"] is True
    assert summary["torch"] == torch.__version__
    assert summary["machine"] and summary["detectron2"] and summary["torchvision"]
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(
        summary["date"]
    )
    assert datetime.timedelta(0) <= age < datetime.timedelta(hours=2)

    for name in FIGURES:
        with open(results / f"{name}.json") as f:
            report = json.load(f)
        assert report["torch"] == torch.__version__ and report["device"]
        rows = report["sizes"]["64x96"]
        assert set(rows) == {"reference path", "fast path", "fast variant"}
        assert all(r["s_per_call"] > 0 and r["detections"] == 10 for r in rows.values())
        assert report["batch"] == (2 if "b32" in name else 1)
        assert report["amp"] == ("bfloat16" if "fp16" in name else "off")
    # The whole-forward step: the static fast path beside the reference path.
    with open(results / "infer_b1_static.json") as f:
        report = json.load(f)
    assert report["batch"] == 1 and report["amp"] == "bfloat16"
    assert "TEST.FAST_PATH.STATIC_SHAPES" in report["opts"]
    rows = report["sizes"]["64x96"]
    assert set(rows) == {"reference path", "fast path"}
    assert all(r["s_per_call"] > 0 and r["detections"] == 10 for r in rows.values())
    # The batch-1 fp16 steps profile each row: fewer host reads on the static path.
    fp16 = json.load(open(results / "infer_b1_fp16.json"))["sizes"]["64x96"]
    for step_rows in (rows, fp16):
        assert all(r["profile"]["top_level_ops"] > 0 for r in step_rows.values())
    assert (
        rows["fast path"]["profile"]["host_reads"] < rows["reference path"]["profile"]["host_reads"]
    )
    # The ONNX step: the CPU provider timed beside PyTorch; the GPU ones named as not run.
    with open(results / "export_onnx.json") as f:
        report = json.load(f)
    assert set(report["rows"]["gallery"]) == {"pytorch", "onnxruntime"}
    assert report["rows"]["query"]["onnxruntime"]["s_per_img"] > 0
    assert set(report["not_run"]) == {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    assert "0 unmatched" in report["parity"]["onnxruntime"]
    with open(results / "train_speed.json") as f:
        train = json.load(f)
    assert train["torch"] == torch.__version__ and train["rows"][0]["s_per_iter"] > 0
    with open(results / "demo_metrics.json") as f:
        metrics = json.load(f)["metrics"]
    assert {"mAP", "top1"} <= set(metrics["search"]) and "AP" in metrics["detection"]
