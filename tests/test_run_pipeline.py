"""projects/stl_search/run_pipeline.py step logic, with every step's command recorded instead of
run: a second run skips finished steps and lets an unfinished training step resume; ``--force``
reruns every step from scratch (training with ``--overwrite``, not ``--resume``, and the index
step into an empty folder, which ``index build`` requires)."""

import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def pipeline(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "run_pipeline", os.path.join(REPO, "projects", "stl_search", "run_pipeline.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ran = []

    class Proc:
        returncode = 0

    def fake_run(cmd, cwd):
        """A step: refuses an existing index as `index build` does, writes what it makes."""
        ran.append(list(cmd))
        if "build" in cmd:
            index = cmd[cmd.index("--index") + 1]
            assert not os.path.exists(index), f"{index} already holds an index"
            os.makedirs(index)
            open(os.path.join(index, "manifest.json"), "w").close()
        for flag, name in (("--out", None), ("OUTPUT_DIR", "eval_metrics.json")):
            if flag in cmd:
                target = cmd[cmd.index(flag) + 1]
                if name is None:  # --out FILE (a picture) or --out PREFIX (query results)
                    target = target if target.endswith(".png") else target + ".png"
                else:
                    os.makedirs(target, exist_ok=True)
                    open(os.path.join(target, "stl_init.pth"), "w").close()
                    target = os.path.join(target, name)
                with open(target, "w") as f:
                    metrics = {"search": {"mAP": 1, "top1": 2}, "detection": {"AP": 3, "recall": 4}}
                    json.dump({"metrics": metrics}, f)
        if any(c.endswith("search_demo.py") for c in cmd):  # its last output: the video's
            open(cmd[cmd.index("--out") + 1] + "_video.json", "w").close()
        return Proc()

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    frame = str(tmp_path / "frame.jpg")
    monkeypatch.setattr(
        module.DatasetCatalog, "get", lambda name: [{"file_name": frame, "image_id": "q"}]
    )
    monkeypatch.setattr(
        module,
        "_query_and_gallery",
        lambda folder: {"file_name": frame, "query_box": [1, 2, 3, 4], "gallery_folder": folder},
    )
    return module, ran


def _training_starts(ran):
    return [
        flag
        for cmd in ran
        for flag in cmd
        if flag in ("--resume", "--overwrite")
        and any("pretrain" in c or "train_net" in c for c in cmd)
    ]


def test_force_reruns_every_step_afresh(pipeline, tmp_path):
    module, ran = pipeline
    out = str(tmp_path / "out")
    module.main(["--output", out])
    assert len(ran) == 6 and _training_starts(ran) == ["--resume", "--resume"]

    ran.clear()
    module.main(["--output", out])  # everything done: nothing runs
    assert ran == []

    module.main(["--output", out, "--force"])
    assert len(ran) == 6  # every step, the index step included (into an empty folder)
    assert _training_starts(ran) == ["--overwrite", "--overwrite"]
