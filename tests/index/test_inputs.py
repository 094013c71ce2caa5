"""Index inputs: video frame sampling (a video the test writes with OpenCV) and clear errors for
bad inputs, bad query boxes and corrupt or foreign shards."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from stl_search.engine.predictor import PersonSearchPredictor
from stl_search.index import builder
from stl_search.index.cli import main
from stl_search.index.shards import GalleryIndex, ShardError
from stl_search.index.sources import sample_frame_indices, video_records

from .helpers import build_index, contents, write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple:
    path = str(tmp_path_factory.mktemp("video") / "walk.avi")
    return path, write_video(path)


def test_video_sampling_frame_indices_and_timestamps(video):
    path, frames = video
    assert len(frames) == 25
    records = video_records(path, sample_fps=4)  # every 2.5 frames of a 10 fps video
    assert [r["frame_index"] for r in records] == [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]
    np.testing.assert_allclose(
        [r["timestamp"] for r in records], [0, 0.2, 0.5, 0.7, 1, 1.2, 1.5, 1.7, 2, 2.2]
    )
    assert [r["frame_index"] for r in video_records(path, sample_fps=30)] == list(range(25))
    assert sample_frame_indices(10.0, 25, 1.0) == [0, 10, 20]
    with pytest.raises(ValueError, match="--sample-fps must be > 0"):
        sample_frame_indices(10.0, 25, 0)


def test_video_index_holds_each_sampled_frames_detections(video, tiny_model, tmp_path):
    path, frames = video
    folder = str(tmp_path / "index")
    build_index(folder, tiny_model[0], path, video_fps=2)
    index = contents(folder)
    assert sorted(set(index["frame_index"].tolist())) == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(index["timestamp"], index["frame_index"] / 10.0)
    assert set(index["file_name"].tolist()) == {path}
    predictor = PersonSearchPredictor(tiny_model[1])
    ten = index["frame_index"] == 10
    detections = predictor.detect([frames[10], frames[15]])[0]  # a BGR array, batch of 2 as built
    np.testing.assert_array_equal(index["boxes"][ten], detections.boxes)
    np.testing.assert_array_equal(index["scores"][ten], detections.scores)


def test_bad_inputs_are_named(tiny_model, synthetic, tmp_path):
    config = tiny_model[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{empty} holds or matches no"):
        build_index(str(tmp_path / "i1"), config, str(empty))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        build_index(str(tmp_path / "i2"), config, str(notes))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scene.jpg").write_text("not a picture either")
    with pytest.raises(ValueError, match="scene.jpg: cannot decode the image"):
        build_index(str(tmp_path / "i3"), config, str(broken))
    bad_video = tmp_path / "bad.avi"
    bad_video.write_bytes(os.urandom(2048))
    with pytest.raises(ValueError, match="bad.avi"):
        build_index(str(tmp_path / "i4"), config, str(bad_video), video_fps=1)
    with pytest.raises(FileNotFoundError, match="missing.mp4 does not exist"):
        build_index(str(tmp_path / "i5"), config, str(tmp_path / "missing.mp4"), video_fps=1)


def test_a_query_box_outside_the_image_is_named(gallery_index, synthetic, tmp_path):
    query = synthetic[1][0]
    args = [
        "query",
        "--index",
        gallery_index,
        "--query",
        query["file_name"],
        "--out",
        str(tmp_path / "q"),
    ]
    with pytest.raises(
        ValueError, match=r"\[200.0, 10.0, 300.0, 60.0\] is not a box inside .*160x96"
    ):
        main([*args, "--box", "200", "10", "300", "60"])
    main([*args, "--box", *map(str, query["query_box"]), "--topk", "3"])
    assert os.path.isfile(tmp_path / "q.json") and os.path.isfile(tmp_path / "q.png")
    assert len(open(tmp_path / "q.csv").read().splitlines()) == 4  # header + 3 hits


def test_a_query_embedding_of_the_wrong_size_is_named(gallery_index, tmp_path):
    bad = str(tmp_path / "q.npy")
    np.save(bad, np.ones(7, np.float32))
    with pytest.raises(ValueError, match="expected 256 finite values"):
        main(
            [
                "query",
                "--index",
                gallery_index,
                "--query-embedding",
                bad,
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_corrupt_and_foreign_shards_are_named(gallery_index, tiny_model, synthetic, tmp_path):
    corrupt = str(tmp_path / "corrupt")
    shutil.copytree(gallery_index, corrupt)
    with open(os.path.join(corrupt, "shard_00001.emb.npy"), "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(ShardError, match="shard_00001.emb.npy does not match the manifest"):
        GalleryIndex.open(corrupt)
    with open(os.path.join(corrupt, "shard_00001.npz"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ShardError, match="shard_00001.npz is not a readable index shard"):
        GalleryIndex.open(corrupt, verify=False)

    other = str(tmp_path / "other")
    files = sorted(os.listdir(synthetic[0]))[:2]
    (tmp_path / "two").mkdir()
    for name in files:
        os.symlink(os.path.join(synthetic[0], name), tmp_path / "two" / name)
    build_index(
        other, tiny_model[0], str(tmp_path / "two"), "TEST.PERSON_SEARCH.SCORE_THRESH", "0.1"
    )
    foreign = str(tmp_path / "foreign")
    shutil.copytree(gallery_index, foreign)
    for suffix in (".npz", ".emb.npy"):
        shutil.copy(
            os.path.join(other, "shard_00000" + suffix),
            os.path.join(foreign, "shard_00000" + suffix),
        )
    with pytest.raises(ShardError, match="shard_00000.npz does not match the manifest"):
        GalleryIndex.open(foreign)
    with pytest.raises(ShardError, match="shard_00000.npz belongs to another index"):
        GalleryIndex.open(foreign, verify=False)


def test_quiet_build_draws_no_progress(video, tiny_model, tmp_path, monkeypatch):
    """``build --quiet`` hands the extraction's progress ``quiet=True``; without it, the main
    process reports (the same index either way)."""
    seen = []

    class Recorder(builder.Progress):
        def __init__(self, *args, quiet=False, **kwargs):
            seen.append(quiet)
            super().__init__(*args, quiet=quiet, **kwargs)

    monkeypatch.setattr(builder, "Progress", Recorder)
    build_index(str(tmp_path / "quiet"), tiny_model[0], video[0], "--quiet", video_fps=2)
    build_index(str(tmp_path / "loud"), tiny_model[0], video[0], video_fps=2)
    assert seen == [True, False]
    quiet, loud = contents(str(tmp_path / "quiet")), contents(str(tmp_path / "loud"))
    np.testing.assert_array_equal(quiet["boxes"], loud["boxes"])
