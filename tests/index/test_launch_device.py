"""``index build`` launches its processes for the device of its config: CPU processes use gloo
even where torch sees a GPU (Detectron2's own launcher would take NCCL there)."""

from stl_search.index import cli

from .helpers import build_index


def test_build_launches_for_the_configs_device(tiny_model, two_images, tmp_path, monkeypatch):
    seen = {}
    real_launch = cli.launch

    def recording_launch(*args, **kwargs):
        seen["device"] = kwargs.get("device")
        return real_launch(*args, **kwargs)

    monkeypatch.setattr(cli, "launch", recording_launch)
    build_index(str(tmp_path / "index"), tiny_model[0], str(two_images))
    assert seen["device"] == "cpu"
