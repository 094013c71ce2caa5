"""Placeholder for Detectron2's compiled extension, installed by stl-search's bootstrap.

The registry sdist of Detectron2 v0.6 ships no C++ sources. Person search needs none of the
compiled ops (RoIAlign, NMS and box ops come from torchvision), but v0.6 imports ``_C`` at module
top in a few places and ``collect_env_info`` asks it for version strings. Any other attribute
raises an error that names what to install instead.
"""


def get_compiler_version() -> str:
    return "none (stl-search placeholder: Detectron2 built without its C++ extension)"


def get_cuda_version() -> str:
    return "none (stl-search placeholder)"


def has_cuda() -> bool:
    return False


def __getattr__(name: str):
    raise AttributeError(
        f"detectron2._C.{name} is not available: this Detectron2 was installed by stl-search's "
        "bootstrap without its C++ extension (deformable/rotated ops, fast COCO eval). Install "
        "official Detectron2 (see docs/installing.md, 'Detectron2') if you need them."
    )
