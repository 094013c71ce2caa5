"""Every command of docs/index.md, run in order in a folder laid out as the docs assume (the
synthetic frames' names, the demo's config and weights paths) with the tests' tiny model."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import cv2

from stl_search.index.cli import main
from stl_search.index.shards import GalleryIndex

FRAMES = "datasets/synthetic_prw/frames"
NAMES = ["c1s1_000000", "c1s1_000100", "c2s1_000000", "c2s1_000100", "c3s2_000100", "c3s2_000200"]


def docs_commands(repo_root: str) -> list:
    """The lines of the ```bash blocks of docs/index.md, continuation lines joined."""
    with open(os.path.join(repo_root, "docs", "index.md")) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    return [line for b in blocks for line in b.replace("\\\n", " ").splitlines() if line.strip()]


def _lay_out(root, tiny_model, synthetic) -> None:
    """The docs' paths: tiny config and weights, the tiny gallery at twice its size (the docs'
    query box lies in a 320 x 192 frame) under the synthetic set's frame names."""
    os.makedirs(root / FRAMES)
    os.makedirs(root / "configs" / "synthetic")
    os.makedirs(root / "output" / "stl_pipeline" / "2_person_search")
    shutil.copy(tiny_model[0], root / "configs" / "synthetic" / "person_search.yaml")
    shutil.copy(
        tiny_model[1].MODEL.WEIGHTS,
        root / "output" / "stl_pipeline" / "2_person_search" / "model_final.pth",
    )
    for name, source in zip(NAMES, sorted(os.listdir(synthetic[0]))):
        image = cv2.imread(os.path.join(synthetic[0], source))
        cv2.imwrite(str(root / FRAMES / f"{name}.jpg"), cv2.resize(image, (320, 192)))


def test_every_docs_command_runs(repo_root, tiny_model, synthetic, tmp_path, monkeypatch):
    _lay_out(tmp_path, tiny_model, synthetic)
    monkeypatch.chdir(tmp_path)
    env, ran = dict(os.environ), []
    for line in docs_commands(repo_root):
        assignment = re.fullmatch(r"(\w+)=(\S+)", line.strip())
        if assignment:
            env[assignment.group(1)] = assignment.group(2)
            continue
        if not line.startswith("python -m stl_search.index "):
            subprocess.run(["bash", "-c", line], env=env, check=True)
            ran.append(line.split()[0])
            continue
        argv = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], line))[3:]
        if argv[0] in ("build", "add"):
            argv[1:1] = ["--threads", "1"]
        main(argv)
        ran.append(argv[0])
    assert ran == ["build", "add", "query", "mkdir", "query", "train", "query"] + [
        "cp",
        "train",
        "query",
    ]
    index = GalleryIndex.open("output/index")
    assert len(index.manifest["sources"]) == 2 and index.manifest["backend"] == "hnsw"
    reduced = GalleryIndex.open("output/index_reduced").manifest["ann"]
    assert (reduced["reduce"], reduced["full_vectors"]) == ("pca64", False)
    assert not [f for f in os.listdir("output/index_reduced") if f.endswith(".emb.npy")]
    for name in ("hits", "hits_moved", "hits_exact", "hits_reduced"):
        assert os.path.isfile(f"output/{name}.json") and os.path.isfile(f"output/{name}.png")
