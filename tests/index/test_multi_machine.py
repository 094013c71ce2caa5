"""An index built by two machines equals the one-process index: two launcher processes on
localhost stand for the machines (``--num-machines 2``, ``--machine-rank 0``/``1``, one TCP
rendezvous at machine 0), sharing the index folder, as in docs/multi-machine.md."""

from __future__ import annotations

import os
import subprocess
import sys

from detectron2.engine.launch import _find_free_port

from .helpers import assert_same_index, build_argv


def test_two_machines_build_the_one_process_index(
    gallery_index, tiny_model, synthetic, tmp_path, repo_root
):
    folder = str(tmp_path / "shared" / "index")
    dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # CPU processes (gloo), one per machine
    machines = [
        subprocess.Popen(
            [sys.executable, "-m", "stl_search.index"]
            + build_argv(folder, tiny_model[0], synthetic[0])
            + ["--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank)]
            + ["--dist-url", dist_url],
            cwd=repo_root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [m.communicate(timeout=300)[0] for m in machines]
    finally:
        for m in machines:
            m.kill()
    for rank, (machine, output) in enumerate(zip(machines, outputs)):
        assert machine.returncode == 0, f"machine {rank}:\n{output}"
    assert "3 of 3 shards to extract, 2 by this process" in outputs[0]  # 1 left to machine 1
    committed = f"index {folder}: 3 shards"
    assert committed in outputs[0] and committed not in outputs[1]  # machine 0 commits
    assert_same_index(gallery_index, folder)
