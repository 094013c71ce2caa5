"""Sightings: matching boxes grouped per source into intervals, filters, and the ``search``
command end to end on a video index (one load, several queries, every output file)."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from stl_search.index.cli import main
from stl_search.index.session import Filters, QuerySession
from stl_search.index.shards import GalleryIndex
from stl_search.index.sightings import SourceTable, group_sightings
from stl_search.index.sources import sample_frame_indices

from .helpers import build_index, write_video


def _fake_gallery(records, dim=8, sources=()):
    """A gallery index in memory: one box per ``(file, frame_index, timestamp)`` record."""
    n = len(records)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return GalleryIndex(
        folder="mem",
        manifest={"embedding_dim": dim, "sources": list(sources)},
        embeddings=[emb],
        boxes=np.tile(np.array([[1, 2, 30, 60]], np.float32), (n, 1)),
        scores=np.ones(n, np.float32),
        file_name=np.array([r[0] for r in records]),
        frame_index=np.array([r[1] for r in records], np.int64),
        timestamp=np.array([r[2] for r in records], np.float64),
    )


def test_video_appearances_become_intervals_within_one_sampling_step():
    fps, sample_fps, count = 25.0, 5.0, 25 * 30  # a 30 s video sampled every 0.2 s
    frames = sample_frame_indices(fps, count, sample_fps)
    records = [("street.mp4", f, f / fps) for f in frames]
    gallery = _fake_gallery(
        records, sources=[{"input": "street.mp4", "kind": "video", "sample_fps": sample_fps}]
    )
    table = SourceTable(gallery)
    np.testing.assert_array_equal(table.sample, np.arange(len(frames)))
    truth = [(2.0, 4.0, 0.9), (10.0, 11.4, 0.7), (20.3, 26.1, 0.8)]
    ids, sims = [], []
    for start, end, sim in truth:
        inside = [i for i, r in enumerate(records) if start <= r[2] <= end]
        inside.pop(len(inside) // 2)  # one missed sample inside each appearance
        ids += inside
        sims += [sim - 0.001 * k for k in range(len(inside))]
    sightings = group_sightings(np.array(ids), np.array(sims), table, gallery, max_gap=2)
    assert [round(s.best_similarity, 3) for s in sightings] == [0.9, 0.8, 0.7]  # ranked
    for s, (start, end, _) in zip(sightings, [truth[0], truth[2], truth[1]]):
        assert abs(s.start - start) <= 1 / sample_fps and abs(s.end - end) <= 1 / sample_fps
        assert s.kind == "video" and s.source == "street.mp4"
        assert s.num_frames == len(s.box_ids)
    # without bridging, the missed sample splits each appearance in two
    assert len(group_sightings(np.array(ids), np.array(sims), table, gallery, max_gap=0)) == 6


def test_image_folders_group_per_camera_and_filters_select_boxes():
    records = [(f"cams/c{c}s1_{i:06d}.jpg", -1, -1.0) for c in (1, 2) for i in range(6)]
    records += [("clip.avi", f, f / 10.0) for f in range(0, 50, 5)]
    gallery = _fake_gallery(records)
    table = SourceTable(gallery)
    assert sorted(set(table.cameras)) == ["c1", "c2", "clip"]
    ids = np.array([0, 1, 2, 4, 6, 7, 13, 14])  # c1: images 0-2, 4; c2: 0-1; clip frames 5, 10
    sims = np.linspace(0.9, 0.5, len(ids))
    sightings = group_sightings(ids, sims, table, gallery, max_gap=0)
    spans = {(s.camera, s.start, s.end) for s in sightings}
    assert spans == {("c1", 0, 2), ("c1", 4, 4), ("c2", 0, 1), ("clip", 0.5, 1.0)}
    assert table.select() is None
    mask = table.select(cameras=["c2"])
    assert mask.sum() == 6 and all("c2s1" in f for f in gallery.file_name[mask])
    mask = table.select(sources=["*.avi"], time_range=(1.0, 2.0))
    np.testing.assert_array_equal(gallery.timestamp[mask], [1.0, 1.5, 2.0])
    with pytest.raises(ValueError, match="start 3.0 is after end 1.0"):
        table.select(time_range=(3.0, 1.0))


@pytest.fixture(scope="module")
def video_index(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("sightings")
    path = str(root / "walk.avi")
    write_video(path, frames=40)
    folder = str(root / "index")
    build_index(folder, tiny_model[0], path, video_fps=5)
    return folder, path


def test_search_command_answers_several_queries_from_one_load(video_index, tmp_path):
    folder, video = video_index
    session = QuerySession(folder)
    table = session.table
    assert set(session.gallery.frame_index.tolist()) <= set(range(0, 40, 2))
    np.testing.assert_array_equal(table.sample, session.gallery.frame_index // 2)
    probe = int(np.flatnonzero(session.gallery.frame_index == 20)[0])
    queries = session.gallery.embeddings_float32()[[probe, 0]]
    np.save(tmp_path / "q.npy", queries)
    out = str(tmp_path / "res")
    results = main(
        [
            "search",
            "--index",
            folder,
            "--query-embedding",
            str(tmp_path / "q.npy"),
            "--min-similarity",
            "0.9",
            "--out",
            out,
        ]
    )
    assert len(results) == 2
    first = results[0]
    assert first.hits[0].box_id == probe and first.threshold == 0.9
    holding = [s for s in first.sightings if probe in s.box_ids]
    assert len(holding) == 1 and holding[0].start <= 2.0 <= holding[0].end
    for suffix in ("_q1.json", "_q1_hits.csv", "_q1_sightings.csv", "_q1_timeline.png"):
        assert os.path.getsize(out + suffix) > 0, suffix
    saved = json.load(open(out + "_q2.json"))
    assert saved["backend"] == "exact" and saved["sightings"][0]["source"] == video
    # a threshold no box reaches: "not in the gallery"
    none = session.search(queries[0], min_similarity=1.01)
    assert none.no_match and none.sightings == [] and len(none.hits) == 10
    # a time range the probe's frame lies outside of excludes it (exact search over the rest)
    late = session.search(queries[0], filters=Filters(time_range=(3.0, 10.0)))
    assert late.backend == "exact (filtered)"
    assert all(h.timestamp >= 3.0 for h in late.hits) and probe not in [h.box_id for h in late.hits]


def test_search_command_embeds_boxes_and_draws_the_grid(video_index, tmp_path):
    folder, video = video_index
    frame = tmp_path / "frame.png"
    capture = cv2.VideoCapture(video)
    ok, pixels = capture.read()
    capture.release()
    assert ok and cv2.imwrite(str(frame), pixels)
    listing = tmp_path / "queries.txt"
    listing.write_text(f"# two boxes of one frame\n{frame} 5 20 30 80\n\n{frame} 40 10 70 90\n")
    out = str(tmp_path / "grid")
    results = main(
        ["search", "--index", folder, "--queries", str(listing), "--out", out, "--topk", "3"]
    )
    assert len(results) == 2 and all(r.threshold is None for r in results)
    assert results[0].meta["box"] == [5.0, 20.0, 30.0, 80.0]
    picture = cv2.imread(out + "_q1.png")
    assert picture is not None and picture.shape[0] > 192 and picture.shape[1] >= 2 * 96
    assert len(results[0].sightings) == 1  # every candidate counts: the whole video, one sighting
    # above every similarity: no sighting, the grid shows the top hits, marked below threshold
    main(
        ["search", "--index", folder, "--queries", str(listing), "--out", out]
        + ["--min-similarity", "1.01", "--topk", "4"]
    )
    assert cv2.imread(out + "_q1.png").shape[1] >= 5 * 96
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{frame} 1 2 3\n")
    with pytest.raises(ValueError, match=f"{bad}:1: expected IMAGE X1 Y1 X2 Y2"):
        main(["search", "--index", folder, "--queries", str(bad), "--out", out])


def test_search_saves_a_clip_of_each_video_sighting(video_index, tmp_path):
    folder, video = video_index
    session = QuerySession(folder)
    probe = int(np.flatnonzero(session.gallery.frame_index == 20)[0])
    np.save(tmp_path / "q.npy", session.gallery.embeddings_float32()[probe])
    clips = tmp_path / "clips"
    argv = ["search", "--index", folder, "--query-embedding", str(tmp_path / "q.npy"),
            "--min-similarity", "0.9", "--out", str(tmp_path / "res"),
            "--save-clips", str(clips), "--clip-margin", "0.2"]  # fmt: skip
    (result,) = main(argv)
    best = result.sightings[0]
    assert probe in best.box_ids and best.kind == "video"
    capture = cv2.VideoCapture(str(clips / "q1_rank1.mp4"))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    first, last = (
        max(0, int(np.floor((best.start - 0.2) * 10))),
        int(np.ceil((best.end + 0.2) * 10)),
    )
    assert count == min(last, 39) - first + 1
    names = {p.name for p in clips.iterdir()}
    assert names == {f"q1_rank{k}.mp4" for k in range(1, min(len(result.sightings), 10) + 1)}
