"""A DetectionCheckpointer whose saves are atomic, whose loads run no code from the file, whose
``--resume`` survives a damaged last checkpoint and refuses weights that do not fit the model.

- Reading: every weights file goes through :func:`read_weights_file`: ``.pkl`` (Detectron2 /
  Detectron1 model zoo) with a restricted unpickler (``stl_search.utils.safe_pickle``), anything
  else with ``torch.load(weights_only=True)``. Detectron2's own ``_load_file`` unpickles ``.pkl``
  files with ``pickle.load``, which runs whatever the file names.
- ``OUTPUT_DIR/last_checkpoint`` may name only a file inside ``OUTPUT_DIR`` (a bare file name).
- ``--resume``: when the file ``last_checkpoint`` names is missing or incomplete (a zip archive
  whose directory or CRCs do not read: a truncated copy, a full disk), the newest complete
  ``model_<iteration>.pth`` is loaded instead, with a warning (:func:`newest_complete_checkpoint`),
  and ``last_checkpoint`` then names it.
- Weights must fit the model: a missing or differently shaped model weight raises
  :class:`WeightsMismatchError` (naming the file and the first keys) when resuming (before the
  optimizer or scheduler state is touched), and, where the owner says which weights may be
  missing (``init_may_miss``, ``load_may_miss``), when initialising or loading a trained model.
  The error names the ``config.yaml`` beside the weights file when there is one (the config the
  weights were trained with).
- An empty, truncated or foreign file is an :class:`UnreadableWeightsError` naming it.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from typing import Any, Iterable, Optional, Sequence, Tuple

from detectron2.checkpoint import DetectionCheckpointer

from .io import atomic_open, atomic_torch_save, safe_torch_load
from .safe_pickle import ForbiddenPickleGlobal, safe_pickle_load

__all__ = [
    "AtomicCheckpointer",
    "CHECKPOINT_NAME",
    "mismatch_message",
    "WeightsMismatchError",
    "newest_complete_checkpoint",
    "read_weights_file",
    "trained_with",
    "UnreadableWeightsError",
]

#: Names of the checkpoints a run writes (model_<iteration>.pth, model_final.pth).
CHECKPOINT_NAME = re.compile(r"^model_(\d+|final)\.pth$")


class WeightsMismatchError(ValueError):
    """A weights file leaves model weights missing or gives them another shape."""


class UnreadableWeightsError(ValueError):
    """A weights file that is empty, truncated or of another kind (text, HTML, another format)."""


#: What the unpicklers raise on bytes that are no (whole) pickle / ``torch.save`` archive.
_GARBLED = (EOFError, KeyError, IndexError, ValueError, TypeError, RuntimeError, zipfile.BadZipFile)


def _unreadable(path: str, kind: str, error: BaseException) -> UnreadableWeightsError:
    return UnreadableWeightsError(
        f"{path}: not a readable {kind} (truncated, or another kind of file: text, an HTML error "
        f"page, another format); the reader said {type(error).__name__}: {error}"
    )


def read_weights_file(path: str) -> Any:
    """The content of a weights file, read without running code from it.

    ``.pkl``: restricted unpickling (plain containers and NumPy arrays only); other names:
    ``torch.load(weights_only=True)`` (tensors and plain containers).

    Raises:
        pickle.UnpicklingError: naming the file and what it refers to, when it holds anything
            else (it could run code).
        UnreadableWeightsError: naming the file, when it is empty, truncated or no weights file.
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise UnreadableWeightsError(f"{path}: empty (0 bytes), not a weights file")
    if path.endswith(".pkl"):
        try:
            return safe_pickle_load(path)
        except ForbiddenPickleGlobal:
            raise
        except (pickle.UnpicklingError, UnicodeDecodeError, *_GARBLED) as e:
            raise _unreadable(path, "pickle file", e) from None
    try:
        return safe_torch_load(path)
    except pickle.UnpicklingError as e:
        # torch names what it refused ("Unsupported global: GLOBAL module.name"); its advice
        # (weights_only=False) would run the file's code and is not repeated here.
        named = re.search(r"(Unsupported global: GLOBAL \S+?)(?: was not an allowed|\s|$)", str(e))
        if named is None:  # not a refused global: the bytes are no torch.save pickle
            detail = str(e).partition("WeightsUnpickler error:")[2].strip().split("\n")[0]
            raise _unreadable(path, "torch.save file", e.__class__(detail or "no pickle")) from None
        raise pickle.UnpicklingError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers "
            f"(loading it could run code): {named.group(1)}"
        ) from None
    except _GARBLED as e:
        raise _unreadable(path, "torch.save file", e) from None


def _is_complete(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` zip archive (directory present, CRCs right)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def _iteration_in_name(path: str) -> float:
    match = CHECKPOINT_NAME.match(os.path.basename(path))
    if not match:
        return -1.0
    return float("inf") if match.group(1) == "final" else float(match.group(1))


def _checkpoint_pointer(save_dir: str) -> Optional[str]:
    """The checkpoint ``save_dir/last_checkpoint`` names, refused unless inside ``save_dir``."""
    pointer = os.path.join(save_dir, "last_checkpoint")
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.read().strip()
    path = os.path.join(save_dir, name)
    inside = os.path.dirname(os.path.realpath(path)) == os.path.realpath(save_dir)
    if not name or os.path.basename(name) != name or name in (".", "..") or not inside:
        raise ValueError(
            f"{pointer} names {name!r}: it may only name a checkpoint file inside {save_dir} "
            "(a bare file name such as model_0004999.pth)"
        )
    return path


def newest_complete_checkpoint(
    save_dir: str, logger: Optional[logging.Logger] = None
) -> Optional[str]:
    """The checkpoint ``--resume`` loads: the one ``save_dir/last_checkpoint`` names, or, when
    that one is missing or incomplete, the newest complete ``model_<iteration>.pth`` /
    ``model_final.pth`` (said in a warning). ``None`` when there is no ``last_checkpoint``.

    Raises:
        ValueError: ``last_checkpoint`` names a file outside ``save_dir``.
        FileNotFoundError: no complete checkpoint is left.
    """
    last = _checkpoint_pointer(save_dir)
    if last is None or _is_complete(last):
        return last
    others = [
        os.path.join(save_dir, f)
        for f in os.listdir(save_dir)
        if CHECKPOINT_NAME.match(f) and os.path.join(save_dir, f) != last
    ]
    for candidate in sorted(others, key=_iteration_in_name, reverse=True):
        if _is_complete(candidate):
            (logger or logging.getLogger(__name__)).warning(
                "%s (named by last_checkpoint) is missing or incomplete; resuming from %s, the "
                "newest complete checkpoint",
                last,
                candidate,
            )
            return candidate
    raise FileNotFoundError(
        f"{last} (named by {save_dir}/last_checkpoint) is missing or incomplete and {save_dir} "
        "holds no other complete checkpoint to resume from"
    )


def mismatch_message(
    path: str,
    missing: Sequence[str],
    wrong_shapes: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...]]],
    hint: str = "",
) -> str:
    """One error message on the model weights that ``path`` leaves missing or misshapen."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} model weights are missing from it (first: {_first(missing)})")
    if wrong_shapes:
        shapes = [
            f"{k}: {tuple(f)} in the file, {tuple(m)} in the model" for k, f, m in wrong_shapes
        ]
        parts.append(f"{len(wrong_shapes)} have another shape (first: {_first(shapes)})")
    return f"{path} does not fit the model: {'; '.join(parts)}. {hint}".strip()


def trained_with(path: str) -> str:
    """A sentence naming the ``config.yaml`` beside the weights file ``path`` (the config of the
    training run that wrote it), or "" when there is none."""
    config = os.path.join(os.path.dirname(os.path.abspath(path)), "config.yaml")
    if not os.path.isfile(config):
        return ""
    return (
        f"The run that wrote it left its config beside it: {config} (pass it as --config-file, "
        "or compare it with yours)."
    )


def _first(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (" ..." if len(items) > n else "")


class AtomicCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer with atomic ``save`` (temp file + rename), loads that run no code
    and resumes that fall back to the newest complete checkpoint (module docstring).

    fvcore writes ``model_XXXX.pth`` and ``last_checkpoint`` in place; a kill during the write
    leaves a truncated file that ``--resume`` would then pick. Here both are renamed into place
    only once complete. (``stl_search.engine.checkpoint.PersonSearchCheckpointer`` adds what
    loading an STL export into a person-search model should report and check.)

    Args:
        model, save_dir, checkpointables: as ``DetectionCheckpointer``.
        init_may_miss: key prefixes that weights loaded by ``resume_or_load(path, resume=False)``
            (an initialisation) may leave missing or misshapen; ``None``: not checked (Detectron2's
            warnings only).
        load_may_miss: the same for a plain :meth:`load` (a trained model, for inference).
        allow_partial_weights: ``MODEL.ALLOW_PARTIAL_WEIGHTS``: an initialisation that misses
            more than ``init_may_miss`` is a warning, not an error.
    """

    #: "resume" while :meth:`resume_or_load` resumes, "init" while it loads initial weights,
    #: ``None`` for a plain :meth:`load`.
    _load_mode: Optional[str] = None
    _loading_path: str = ""

    def __init__(
        self,
        model: Any,
        save_dir: str = "",
        *,
        init_may_miss: Optional[Tuple[str, ...]] = None,
        load_may_miss: Optional[Tuple[str, ...]] = None,
        allow_partial_weights: bool = False,
        **checkpointables: Any,
    ):
        super().__init__(model, save_dir, **checkpointables)
        self.init_may_miss = init_may_miss
        self.load_may_miss = load_may_miss
        self.allow_partial_weights = allow_partial_weights

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

    def get_checkpoint_file(self) -> str:
        return _checkpoint_pointer(self.save_dir) or ""

    def resume_or_load(self, path: str, *, resume: bool = True) -> Any:
        resuming = resume and self.has_checkpoint()
        self._load_mode = "resume" if resuming else "init"
        try:
            if resuming:
                path = newest_complete_checkpoint(self.save_dir, self.logger)
                loaded = self.load(path)
                if path != _checkpoint_pointer(self.save_dir) and self.save_to_disk:
                    # a fallback: the pointer names what the run continues from, not the
                    # damaged file
                    with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
                        f.write(os.path.basename(path))
                return loaded
            return self.load(path, checkpointables=[])
        finally:
            self._load_mode = None

    def load(self, path: str, *args: Any, **kwargs: Any) -> Any:
        self._loading_path = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading_path = ""

    def _load_file(self, filename: str) -> dict:
        loaded = read_weights_file(filename)
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{filename}: not a checkpoint (a dict), but a {type(loaded).__name__}"
            )
        if filename.endswith(".pkl"):  # as DetectionCheckpointer reads model-zoo files
            if "model" in loaded and "__author__" in loaded:
                return loaded
            blobs = loaded.get("blobs", loaded)
            blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            state = loaded.get("model_state", {})
            state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        if "model" not in loaded:
            loaded = {"model": loaded}
        # Our files hold torch-layout weights (not Caffe2 / Detectron1 pickles).
        loaded.setdefault("matching_heuristics", False)
        return loaded

    def _load_model(self, checkpoint: Any) -> Any:
        file_keys = set(checkpoint.get("model", {}))
        incompatible = super()._load_model(checkpoint)
        if self._loading_path and incompatible is not None:
            self._check_fit(incompatible, file_keys)
        return incompatible

    def _may_miss(self, file_keys: set) -> Optional[Tuple[str, ...]]:
        """Key prefixes the current load may leave missing or misshapen (``None``: unchecked)."""
        if self._load_mode == "resume":
            return ()
        return self.init_may_miss if self._load_mode == "init" else self.load_may_miss

    def _check_fit(self, incompatible: Any, file_keys: set) -> None:
        """Raise :class:`WeightsMismatchError` when the weights being loaded leave a model weight
        outside :meth:`_may_miss` missing or misshapen (BatchNorm's ``num_batches_tracked``
        counters excepted)."""
        allowed = self._may_miss(file_keys)
        if allowed is None:
            return
        missing = [
            k
            for k in incompatible.missing_keys
            if not k.endswith("num_batches_tracked") and not k.startswith(allowed)
        ]
        wrong = [s for s in incompatible.incorrect_shapes if not s[0].startswith(allowed)]
        if not missing and not wrong:
            return
        if self._load_mode == "init" and self.allow_partial_weights:
            hint = "MODEL.ALLOW_PARTIAL_WEIGHTS is set: they keep their initialisation."
            self.logger.warning(mismatch_message(self._loading_path, sorted(missing), wrong, hint))
            return
        hint = f"{self._fit_hint()} {trained_with(self._loading_path)}".strip()
        raise WeightsMismatchError(
            mismatch_message(self._loading_path, sorted(missing), wrong, hint)
        )

    def _fit_hint(self) -> str:
        if self._load_mode == "resume":
            return "Resume with the config the run was started with, or start afresh."
        if self._load_mode == "init":
            return (
                f"An initialisation may leave only {', '.join(self.init_may_miss or ())} "
                "uninitialised: check that the weights were made for this model (depth, widths), "
                "or set MODEL.ALLOW_PARTIAL_WEIGHTS True to train from them anyway."
            )
        return "Use weights trained with this config (same depth, widths and heads)."
