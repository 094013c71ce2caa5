"""Lazy registration of PRW, CUHK-SYSU, MovieNet-PS and the synthetic set in Detectron2's
catalogs.

Importing this module only *registers* loader functions: nothing is read until
``DatasetCatalog.get(name)`` runs. The data root is ``$DETECTRON2_DATASETS`` (default
``datasets/``), read when a set is loaded, as Detectron2's built-in data sets do:

=====================================================  =========================================
names                                                  root under the data root
=====================================================  =========================================
``prw_train``, ``prw_gallery``, ``prw_query``           ``PRW-v16.04.20/`` (or ``PRW/``)
``cuhk_sysu_train``, ``cuhk_sysu_gallery``,             ``CUHK-SYSU/``
``cuhk_sysu_query`` (= G100), ``cuhk_sysu_query_g{50,100,500,1000,2000,4000}``
``movienet_ps_train`` (= app10), ``movienet_ps_gallery``, ``MovieNet-PS/`` (docs/movienet-ps.md)
``movienet_ps_query`` (= G2000), ``movienet_ps_train_app{10,30,50,70,100}``,
``movienet_ps_gallery_g{2000,4000,10000}``, ``movienet_ps_query_g{2000,4000,10000}``
``synthetic_train``, ``synthetic_gallery``,             ``synthetic_prw/`` (PRW format; generated
``synthetic_query``                                     with the default spec on first use)
=====================================================  =========================================

Metadata (docs/interfaces.md): ``thing_classes=["person"]``, ``evaluator_type="person_search"``,
``protocol`` (``"prw"`` / ``"cuhk_sysu"``), ``split`` (``"train"`` / ``"gallery"`` / ``"query"``);
query splits also ``gallery_name`` (their gallery split) and, for CUHK-SYSU, ``gallery_size``;
gallery splits ``query_name`` (their default query split). Loading a training split sets
``num_identities`` and ``identity_to_person_id`` (raw identity → contiguous label).

Your own copy: ``register_prw("myprw", "/data/PRW-v16.04.20")`` registers ``myprw_train``,
``myprw_gallery`` and ``myprw_query`` (likewise :func:`register_cuhk_sysu`,
:func:`register_synthetic`).
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Optional, Tuple, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from . import movienet_ps
from .cuhk_sysu import GALLERY_SIZES, load_cuhk_sysu_queries, load_cuhk_sysu_scenes
from .prw import load_prw_queries, load_prw_scenes
from .synthetic import SyntheticSpec, ensure_generated

logger = logging.getLogger(__name__)

__all__ = [
    "register_prw",
    "register_cuhk_sysu",
    "register_movienet_ps",
    "register_synthetic",
    "register_all_builtin",
    "num_training_identities",
    "data_root",
]

Root = Union[str, Callable[[], str]]


def data_root() -> str:
    """``$DETECTRON2_DATASETS`` or ``datasets``."""
    return os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def _resolve(root: Root) -> str:
    return root() if callable(root) else root


def _with_training_metadata(name: str, load: Callable[[], List[dict]]) -> Callable[[], List[dict]]:
    """Wrap a training-split loader so that loading it records its identity labels in metadata."""

    def run() -> List[dict]:
        dicts = load()
        mapping: Dict[int, int] = {}
        for d in dicts:
            for a in d.get("annotations", ()):
                if a["person_id"] >= 0:
                    mapping[int(a["identity"])] = int(a["person_id"])
        if sorted(mapping.values()) != list(range(len(mapping))):
            raise ValueError(f"{name}: person_id labels are not contiguous 0..N-1")
        meta = MetadataCatalog.get(name)
        if getattr(meta, "identity_to_person_id", None) not in (None, mapping):
            # The files changed under a registered name (e.g. a regenerated set): replace.
            del meta.identity_to_person_id
            del meta.num_identities
        meta.set(num_identities=len(mapping), identity_to_person_id=mapping)
        return dicts

    return run


def _register(name: str, load: Callable[[], List[dict]], root: Root, **metadata) -> None:
    """Register ``name`` unless it already is with the same root (idempotent)."""
    root_desc = (
        root if isinstance(root, str) else f"$DETECTRON2_DATASETS/{getattr(root, 'subdir', '?')}"
    )
    if name in DatasetCatalog.list():
        old = getattr(MetadataCatalog.get(name), "dataset_root", None)
        if old == root_desc:
            return
        raise ValueError(
            f"data set {name!r} is already registered with root {old!r}; "
            f"cannot register it again with root {root_desc!r}"
        )
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=["person"], evaluator_type="person_search", dataset_root=root_desc, **metadata
    )


def register_linked_splits(
    name_prefix: str,
    root: Root,
    protocol: str,
    load_train: Callable[[], List[dict]],
    load_gallery: Callable[[], List[dict]],
    queries: Dict[str, Tuple[Callable[[], List[dict]], dict]],
) -> List[str]:
    """Register ``{prefix}_train``, ``{prefix}_gallery`` and the query splits ``queries``
    (``{name: (load, extra metadata)}``), linked through their metadata: the training split
    learns its identities when loaded, the gallery's ``query_name`` is the first query split and
    every query split's ``gallery_name`` is the gallery. Returns the registered names."""
    train, gallery = f"{name_prefix}_train", f"{name_prefix}_gallery"
    _register(
        train, _with_training_metadata(train, load_train), root, protocol=protocol, split="train"
    )
    _register(
        gallery,
        load_gallery,
        root,
        protocol=protocol,
        split="gallery",
        query_name=next(iter(queries)),
    )
    for name, (load, extra) in queries.items():
        _register(name, load, root, protocol=protocol, split="query", gallery_name=gallery, **extra)
    return [train, gallery, *queries]


def _under_data_root(*candidates: str) -> Callable[[], str]:
    """A root resolved at load time: the first existing candidate under the data root."""

    def resolve() -> str:
        base = data_root()
        for c in candidates:
            if os.path.isdir(os.path.join(base, c)):
                return os.path.join(base, c)
        return os.path.join(base, candidates[0])

    resolve.subdir = " or ".join(candidates)  # type: ignore[attr-defined]
    return resolve


def register_prw(
    name_prefix: str,
    root: Root,
    protocol: str = "prw",
    prepare: Optional[Callable[[str], None]] = None,
) -> List[str]:
    """Register ``{prefix}_train``, ``{prefix}_gallery``, ``{prefix}_query`` of a PRW-format copy.

    Args:
        name_prefix: e.g. ``"prw"``.
        root: the directory holding ``frames/``, ``annotations/``, ``frame_train.mat``, ... (or a
            function returning it, called when a split is loaded).
        prepare: called with the resolved root before any split is read (e.g. to generate it).
    Returns the registered names.
    """

    def loader(fn: Callable[[str], List[dict]]) -> Callable[[], List[dict]]:
        def load() -> List[dict]:
            r = _resolve(root)
            if prepare is not None:
                prepare(r)
            return fn(r)

        return load

    return register_linked_splits(
        name_prefix,
        root,
        protocol,
        loader(lambda r: load_prw_scenes(r, "train")),
        loader(lambda r: load_prw_scenes(r, "gallery")),
        {f"{name_prefix}_query": (loader(load_prw_queries), {})},
    )


def register_cuhk_sysu(name_prefix: str, root: Root) -> List[str]:
    """Register ``{prefix}_train``, ``{prefix}_gallery``, ``{prefix}_query`` (TestG100) and
    ``{prefix}_query_g{50,100,500,1000,2000,4000}`` of a CUHK-SYSU copy at ``root``."""
    sizes = [(f"{name_prefix}_query", 100)] + [
        (f"{name_prefix}_query_g{s}", s) for s in GALLERY_SIZES
    ]
    return register_linked_splits(
        name_prefix,
        root,
        "cuhk_sysu",
        lambda: load_cuhk_sysu_scenes(_resolve(root), "train"),
        lambda: load_cuhk_sysu_scenes(_resolve(root), "gallery"),
        {
            name: (
                (lambda s=size: load_cuhk_sysu_queries(_resolve(root), s)),
                {"gallery_size": size},
            )
            for name, size in sizes
        },
    )


def register_movienet_ps(name_prefix: str, root: Root) -> List[str]:
    """Register a MovieNet-PS copy at ``root``: the default protocol (10 appearances, gallery
    2,000) as ``{prefix}_train``, ``{prefix}_gallery``, ``{prefix}_query``; every training level
    as ``{prefix}_train_app{N}``; every gallery size as ``{prefix}_gallery_g{G}`` with its
    ``{prefix}_query_g{G}`` (a size's gallery is its own ``pool_<G>.mat``)."""
    mv = movienet_ps
    default_g = mv.DEFAULT_GALLERY_SIZE
    names = register_linked_splits(
        name_prefix,
        root,
        "cuhk_sysu",
        lambda: mv.load_movienet_ps_scenes(_resolve(root), "train"),
        lambda: mv.load_movienet_ps_scenes(_resolve(root), "gallery"),
        {
            f"{name_prefix}_query": (
                lambda: mv.load_movienet_ps_queries(_resolve(root), default_g),
                {"gallery_size": default_g},
            )
        },
    )
    for n in mv.TRAIN_APPEARANCES:
        name = f"{name_prefix}_train_app{n}"
        train = _with_training_metadata(
            name, lambda n=n: mv.load_movienet_ps_scenes(_resolve(root), "train", n)
        )
        _register(name, train, root, protocol="cuhk_sysu", split="train")
        names.append(name)
    for g in mv.GALLERY_SIZES:
        gallery, query = f"{name_prefix}_gallery_g{g}", f"{name_prefix}_query_g{g}"
        _register(
            gallery,
            lambda g=g: mv.load_movienet_ps_scenes(_resolve(root), "gallery", gallery_size=g),
            root,
            protocol="cuhk_sysu",
            split="gallery",
            query_name=query,
        )
        _register(
            query,
            lambda g=g: mv.load_movienet_ps_queries(_resolve(root), g),
            root,
            protocol="cuhk_sysu",
            split="query",
            gallery_name=gallery,
            gallery_size=g,
        )
        names += [gallery, query]
    return names


def register_synthetic(
    name_prefix: str, root: Root, spec: Optional[SyntheticSpec] = None, **overrides
) -> List[str]:
    """Register a synthetic set (PRW format) at ``root``, generated from ``spec`` / ``overrides``
    the first time one of its splits is loaded (if ``root`` holds no complete set yet)."""
    return register_prw(
        name_prefix, root, protocol="prw", prepare=lambda r: ensure_generated(r, spec, **overrides)
    )


_REGISTERED = False


def register_all_builtin() -> None:
    """Register every built-in name (idempotent: a second call does nothing)."""
    global _REGISTERED
    if _REGISTERED:
        return
    register_prw("prw", _under_data_root("PRW-v16.04.20", "PRW"))
    register_cuhk_sysu("cuhk_sysu", _under_data_root("CUHK-SYSU"))
    register_movienet_ps("movienet_ps", _under_data_root("MovieNet-PS"))
    register_synthetic("synthetic", _under_data_root("synthetic_prw"))
    _REGISTERED = True


def num_training_identities(name: str) -> int:
    """Number of training identities (ID classifier classes) of training split ``name``; loads
    the split if its metadata does not have them yet."""
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "num_identities"):
        DatasetCatalog.get(name)
    if not hasattr(meta, "num_identities"):
        raise ValueError(f"{name!r} is not a registered training split with identity labels")
    return int(meta.num_identities)


def default_query_split(gallery_name: str) -> str:
    """The query split registered with gallery split ``gallery_name`` (its metadata
    ``query_name``, set by every registration here and by ``register_person_search_json``)."""
    query_name = MetadataCatalog.get(gallery_name).get("query_name", None)
    if query_name is None:
        raise KeyError(
            f"no query split for {gallery_name!r}: pass query_name or register the gallery "
            "with metadata query_name"
        )
    return query_name
