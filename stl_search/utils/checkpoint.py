"""A DetectionCheckpointer whose saves are atomic and whose loads refuse pickled code."""

from __future__ import annotations

import os
from typing import Any

from detectron2.checkpoint import DetectionCheckpointer

from .io import atomic_open, atomic_torch_save, safe_torch_load


class AtomicCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer with atomic ``save`` (temp file + rename) and ``weights_only``
    loads.

    fvcore writes ``model_XXXX.pth`` and ``last_checkpoint`` in place; a kill during the write
    leaves a truncated file that ``--resume`` would then pick. Here both are renamed into place
    only once complete. (``stl_search.engine.checkpoint.PersonSearchCheckpointer`` adds what
    loading an STL export into a person-search model should report.)
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to {}".format(save_file))
        atomic_torch_save(data, save_file)
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(basename)

    def _load_file(self, filename: str) -> dict:
        if filename.endswith(".pth") and os.path.isfile(filename):
            loaded = safe_torch_load(filename)
            if "model" not in loaded:
                loaded = {"model": loaded}
            # Our files hold torch-layout weights (not Caffe2 / Detectron1 pickles).
            loaded.setdefault("matching_heuristics", False)
            return loaded
        return super()._load_file(filename)
