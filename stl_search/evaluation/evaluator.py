"""``PersonSearchEvaluator``: Detectron2's ``DatasetEvaluator`` for person search (PRW and CUHK-SYSU
protocols).

It only collects and gathers: gallery detections (``process``) and query embeddings
(``process_queries``), gathered from all processes in ``evaluate``. Scoring is delegated, as in
Detectron2's ``COCOEvaluator``: :mod:`.protocol_inputs` turns the data set dicts and the collected
predictions into the arrays of the protocol core (:mod:`.galleries`, :mod:`.detection`,
:mod:`.search_metrics`), and :mod:`.report` writes the JSON and the gallery-size curve. Use it
through :func:`stl_search.evaluation.inference_on_person_search`. Data set dicts and model outputs
follow ``../../docs/interfaces.md``; the protocol is described in ``../../docs/protocol.md``.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.datasets import default_query_split
from . import protocol_inputs as P
from .detection import detection_metrics
from .report import write_report
from .search_authors import authors_search_metrics, detection_identities
from .search_metrics import SearchResult, search_metrics

logger = logging.getLogger(__name__)

#: Protocol defaults of CBGM (SeqNet): top-k1 gallery detections, k2 query-side nodes.
CBGM_DEFAULTS = {"cuhk_sysu": (10, 3), "prw": (30, 4)}
#: Search rules: SeqNet's (the literature's numbers) alone, or with the paper's authors' beside it.
SEARCH_PROTOCOLS = ("seqnet", "authors")


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _require_finite(name: str, values: np.ndarray, inp: dict) -> None:
    """Refuse a NaN or infinite model output: it would turn into a wrong mAP (NaN distances sort
    anywhere) instead of an error. The message names the image (and query) it came from."""
    if np.isfinite(values).all():
        return
    bad = int(np.count_nonzero(~np.isfinite(values)))
    query = f" (query {inp['query_index']})" if "query_index" in inp else ""
    raise FloatingPointError(
        f"{inp.get('file_name', inp.get('image_id'))}{query}: {bad} NaN or infinite value(s) in "
        f"the model's {name}; check the weights and the input image"
    )


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _search_dict(result: SearchResult) -> Dict[str, float]:
    out = {"mAP": 100.0 * result.mAP}
    out.update({f"top{k}": 100.0 * v for k, v in result.accuracy().items()})
    return out


class PersonSearchEvaluator(DatasetEvaluator):
    """Person-search evaluation of one gallery split (PRW or CUHK-SYSU protocol).

    Results (percentages): ``{"search": {"mAP", "top1", "top5", "top10"}, "search_<g>": ...,
    "detection": {"AP", "recall", "AP_labeled", "recall_labeled"}}``; with ``search_protocol``
    "authors" also ``"search_authors"`` (headline gallery) and ``"search_authors_<g>"``.
    """

    @configurable
    def __init__(
        self,
        gallery_dataset_name: str,
        query_dataset_names: Union[str, Sequence[str]],
        *,
        protocol: Optional[str] = None,
        score_thresh: float = 0.5,
        det_iou_thresh: float = 0.5,
        prw_modes: Sequence[str] = ("all", "multi_view"),
        cuhk_gallery_sizes: Optional[Sequence[int]] = None,
        cbgm: bool = False,
        cbgm_k1: int = 0,
        cbgm_k2: int = 0,
        topk: Sequence[int] = (1, 5, 10),
        output_dir: Optional[str] = None,
        distributed: bool = True,
        feature_dtype: str = "float32",
        search_protocol: str = "seqnet",
        retrieval_grid: Sequence[int] = (0, 0),
    ) -> None:
        """
        Args:
            gallery_dataset_name: registered gallery split (e.g. ``prw_gallery``).
            query_dataset_names: the query split(s). The first is the one whose queries run
                through the model (:attr:`query_dataset_name`); for CUHK-SYSU, every name is one
                gallery size (``cuhk_sysu_query_g{N}``; the same queries with another ``gallery``
                list): queries are run once and matched across sizes by ``query_index``. A single
                CUHK-SYSU name with ``cuhk_gallery_sizes`` expands to ``<base>_g{N}`` for each
                registered size.
            protocol: "prw" or "cuhk_sysu"; default from the gallery metadata ``protocol``, else
                inferred (queries with a ``gallery`` list: CUHK-SYSU).
            score_thresh: detections below are dropped (search and detection), 0.5.
            det_iou_thresh: detection matching IoU, 0.5.
            prw_modes: PRW galleries to report, the first is the headline ``"search"``.
            cuhk_gallery_sizes: CUHK-SYSU sizes to report (see ``query_dataset_names``); the
                headline ``"search"`` is g100 when present. ``-1`` adds the full gallery
                (``"search_gfull"``): every gallery image but the query's own, targets from the
                annotations (the reference's ``gallery_size=-1``, which crashes there).
            cbgm: CBGM re-ranking (off by default); ``cbgm_k1``/``cbgm_k2``: 0 = protocol default
                (10/3 CUHK-SYSU, 30/4 PRW). The query frame's context persons are taken from the
                gallery detections of that frame (see ``query_context_from_gallery``).
            topk: top-k values reported.
            output_dir: where the JSON (and for CUHK-SYSU the gallery-size PNG) go; None: nothing
                written.
            distributed: gather from all processes with ``comm.gather``; evaluate on the main one.
            feature_dtype: storage of gallery embeddings ("float32" reproduces the reference;
                "float16" halves the memory).
            search_protocol: "seqnet" (SeqNet's rule, :mod:`.search_metrics`) or "authors": SeqNet's
                rule still gives ``search*``, the paper's authors' rule
                (:mod:`.search_authors`) is reported beside it as ``search_authors*``.
            retrieval_grid: (queries, top-k) of the report's retrieval grid; 0 draws none.
        """
        if search_protocol not in SEARCH_PROTOCOLS:
            raise ValueError(
                f"TEST.PERSON_SEARCH.PROTOCOL must be one of {SEARCH_PROTOCOLS}, "
                f"got {search_protocol!r}"
            )
        self._search_protocol = search_protocol
        self._retrieval_grid = tuple(int(v) for v in retrieval_grid)
        self._gallery_name = gallery_dataset_name
        names = (
            [query_dataset_names]
            if isinstance(query_dataset_names, str)
            else list(query_dataset_names)
        )
        if not names:
            raise ValueError("at least one query data set is needed")
        self._protocol = protocol or MetadataCatalog.get(gallery_dataset_name).get("protocol", None)
        if self._protocol is not None and self._protocol not in CBGM_DEFAULTS:
            raise ValueError(f"unknown protocol {self._protocol!r}")
        sizes = [int(n) for n in (cuhk_gallery_sizes or [])]
        self._cuhk_full = -1 in sizes
        if any(n > 0 for n in sizes) and len(names) == 1 and self._protocol != "prw":
            names = self._expand_sizes(names[0], [n for n in sizes if n > 0])
        self._query_names = names
        self._score_thresh = float(score_thresh)
        self._det_iou_thresh = float(det_iou_thresh)
        self._prw_modes = list(prw_modes) or ["all"]
        self._cbgm = bool(cbgm)
        self._cbgm_k = (int(cbgm_k1), int(cbgm_k2))
        self._topk = tuple(int(k) for k in topk)
        self._output_dir = output_dir
        self._distributed = distributed
        self._feature_dtype = np.dtype(feature_dtype)
        self.reset()

    @classmethod
    def from_config(
        cls,
        cfg,
        dataset_name: str,
        query_name: Optional[str] = None,
        output_dir: Optional[str] = None,
    ) -> dict:
        """Arguments from ``cfg.TEST.PERSON_SEARCH`` (see ``stl_search/config.py``) for gallery
        split ``dataset_name``; ``query_name`` defaults to the gallery's metadata ``query_name``."""
        if query_name is None:
            query_name = default_query_split(dataset_name)
        t = cfg.TEST.PERSON_SEARCH
        return {
            "gallery_dataset_name": dataset_name,
            "query_dataset_names": query_name,
            "score_thresh": t.SCORE_THRESH,
            "det_iou_thresh": t.DET_IOU_THRESH,
            "prw_modes": list(t.PRW_MODES),
            "cuhk_gallery_sizes": list(t.CUHK_GALLERY_SIZES),
            "cbgm": t.CBGM,
            "cbgm_k1": t.CBGM_K1,
            "cbgm_k2": t.CBGM_K2,
            "topk": list(t.TOPK),
            "output_dir": output_dir,
            "feature_dtype": t.FEATURE_DTYPE,
            "search_protocol": t.PROTOCOL,
            "retrieval_grid": list(t.RETRIEVAL_GRID),
        }

    @staticmethod
    def _expand_sizes(name: str, sizes: Sequence[int]) -> List[str]:
        """``cuhk_sysu_query`` / ``cuhk_sysu_query_g100`` + sizes -> registered ``..._g{N}``."""
        base = re.sub(r"_g\d+$", "", name)
        registered = set(DatasetCatalog.list())
        names = [f"{base}_g{n}" for n in sizes if f"{base}_g{n}" in registered]
        missing = [n for n in sizes if f"{base}_g{n}" not in registered]
        if names and missing:
            logger.warning("Gallery sizes %s not registered for %s: skipped", missing, base)
        return names or [name]

    @property
    def query_dataset_name(self) -> str:
        """The query split to run through the model's query mode."""
        return self._query_names[0]

    # ---------------------------------------------------------------- collection
    def reset(self) -> None:
        self._gallery: Dict[str, P.ImageDetections] = {}
        self._queries: Dict[int, np.ndarray] = {}

    def process(self, inputs, outputs) -> None:
        """Gallery images: keep each image's detections with score >= ``score_thresh`` (boxes,
        scores as float32, L2-normalised embeddings as ``feature_dtype``), keyed by ``image_id``.
        Outputs with ``query_embedding`` are handed to :meth:`process_queries`. A NaN or
        infinite score, box or embedding raises ``FloatingPointError`` naming the image."""
        for inp, out in zip(inputs, outputs):
            if "query_embedding" in out:
                self.process_queries([inp], [out])
                continue
            inst = out["instances"]
            if not inst.has("pred_embeddings"):
                raise KeyError("person-search evaluation needs `pred_embeddings` in the instances")
            scores = _to_numpy(inst.scores).astype(np.float32).ravel()
            boxes = _to_numpy(inst.pred_boxes.tensor).astype(np.float32).reshape(-1, 4)
            emb = _to_numpy(inst.pred_embeddings)
            for name, values in (("scores", scores), ("boxes", boxes), ("embeddings", emb)):
                _require_finite(name, values, inp)
            keep = scores >= self._score_thresh
            boxes = boxes[keep]
            dim = emb.shape[-1] if emb.ndim == 2 else (emb.size // max(len(scores), 1))
            emb = _l2_normalize(emb.reshape(len(scores), dim)[keep])
            self._gallery[str(inp["image_id"])] = (
                boxes,
                scores[keep],
                emb.astype(self._feature_dtype),
            )

    def process_queries(self, inputs, outputs) -> None:
        """Queries: each input's L2-normalised ``query_embedding``, keyed by ``query_index``."""
        for inp, out in zip(inputs, outputs):
            emb = _to_numpy(out["query_embedding"]).ravel()
            _require_finite("query embedding", emb, inp)
            self._queries[int(inp["query_index"])] = _l2_normalize(emb)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        if self._distributed:
            comm.synchronize()
            gallery_parts = comm.gather(self._gallery, dst=0)
            query_parts = comm.gather(self._queries, dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            gallery: Dict = {}
            queries: Dict = {}
            for part in gallery_parts:
                gallery.update(part)
            for part in query_parts:
                queries.update(part)
        else:
            gallery, queries = self._gallery, self._queries
        return self._evaluate(gallery, queries)

    def _evaluate(self, preds: Dict, query_embs: Dict) -> "OrderedDict[str, Dict[str, float]]":
        gallery_dicts = DatasetCatalog.get(self._gallery_name)
        qdicts = DatasetCatalog.get(self.query_dataset_name)
        protocol = self._protocol or ("cuhk_sysu" if qdicts and "gallery" in qdicts[0] else "prw")
        id_to_index = {str(d["image_id"]): i for i, d in enumerate(gallery_dicts)}

        gal, truth = P.gallery_arrays(gallery_dicts, preds, query_embs, self._feature_dtype)
        q_emb = P.query_matrix(qdicts, query_embs, gal.embeddings.shape[1], self.query_dataset_name)
        q_images = P.query_images(qdicts, id_to_index)
        labels, protocols, headline = self._protocols(
            protocol, qdicts, q_images, truth, id_to_index
        )

        cbgm = None
        if self._cbgm:
            k1, k2 = (k or d for k, d in zip(self._cbgm_k, CBGM_DEFAULTS[protocol]))
            cbgm = P.cbgm_context(gal, qdicts, q_images, k1, k2, self._score_thresh)
        searches = search_metrics(
            gal, q_emb, protocols, score_thresh=self._score_thresh, topk=self._topk, cbgm=cbgm
        )
        detection = {
            key: detection_metrics(
                truth.boxes,
                truth.splits,
                gal.boxes,
                gal.scores,
                gal.splits,
                gt_labeled=truth.identities >= 0,
                labeled_only=labeled,
                score_thresh=self._score_thresh,
                iou_thresh=self._det_iou_thresh,
            )
            for key, labeled in (("all", False), ("labeled", True))
        }

        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
        by_label = dict(zip(labels, searches))
        results["search"] = _search_dict(by_label[headline])
        for label, res in by_label.items():
            if protocol == "cuhk_sysu" or label != headline:
                results[f"search_{label}"] = _search_dict(res)
            if res.num_queries_without_target:
                logger.warning(
                    "%s/%s: %d queries have their target in no gallery image "
                    "(AP 0, counted in the mean)",
                    self._gallery_name,
                    label,
                    res.num_queries_without_target,
                )
        if self._search_protocol == "authors":
            ids = detection_identities(
                gal, truth.boxes, truth.identities, truth.splits, self._det_iou_thresh
            )
            q_ids = np.array([d["identity"] for d in qdicts], dtype=np.int64)
            authors = authors_search_metrics(
                gal, ids, q_emb, q_ids, protocols, score_thresh=self._score_thresh, topk=self._topk
            )
            for label, res in zip(labels, authors):
                key = "search_authors" if label == headline else f"search_authors_{label}"
                results[key] = _search_dict(res)
        results["detection"] = {
            "AP": 100.0 * detection["all"].ap,
            "recall": 100.0 * detection["all"].recall,
            "AP_labeled": 100.0 * detection["labeled"].ap,
            "recall_labeled": 100.0 * detection["labeled"].recall,
        }
        logger.info("Person search on %s (%s): %s", self._gallery_name, protocol, dict(results))
        if self._output_dir:
            write_report(
                self._output_dir,
                gallery_name=self._gallery_name,
                query_names=self._query_names,
                protocol=protocol,
                headline=headline,
                settings={
                    "score_thresh": self._score_thresh,
                    "det_iou_thresh": self._det_iou_thresh,
                    "cbgm": self._cbgm,
                    "topk": list(self._topk),
                    "search_protocol": self._search_protocol,
                },
                results=results,
                labels=labels,
                searches=searches,
                detection=detection,
                query_dicts=qdicts,
                gallery_dicts=gallery_dicts,
                gallery=gal,
                retrieval_grid=self._retrieval_grid,
            )
        return results

    def _protocols(
        self, protocol: str, qdicts, q_images: np.ndarray, truth: P.GalleryTruth, id_to_index
    ) -> Tuple[List[str], list, str]:
        """``(labels, QueryGalleries list, headline label)`` of the data set's protocol."""
        if protocol == "prw":
            labels = list(self._prw_modes)
            return labels, P.prw_protocols(qdicts, q_images, truth, labels), labels[0]
        labels, protocols = [], []
        for name in self._query_names:
            size_dicts = qdicts if name == self.query_dataset_name else DatasetCatalog.get(name)
            label, galleries = P.cuhk_protocol(
                name, size_dicts, qdicts, id_to_index, self._gallery_name, self.query_dataset_name
            )
            labels.append(label)
            protocols.append(galleries)
        if self._cuhk_full:
            protocols.append(P.full_gallery_protocol(qdicts, q_images, truth))
            labels.append("gfull")
        return labels, protocols, ("g100" if "g100" in labels else labels[0])
