"""``PersonSearchEvaluator``: collects gallery detections and query embeddings, scores the PRW or
CUHK-SYSU protocol with :mod:`stl_search.evaluation.metrics`, writes the per-query results.

Use it through :func:`stl_search.evaluation.inference_on_person_search`, which runs the gallery
split through detection (``process``) and the query split through the model's query mode
(``process_queries``). Data set dicts and the model outputs follow ``docs/interfaces.md``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from stl_search.utils.io import atomic_write_json

from . import metrics as M
from .plots import plot_gallery_size_curve

logger = logging.getLogger(__name__)

#: Protocol defaults of CBGM (SeqNet): top-k1 gallery detections, k2 query-side nodes.
CBGM_DEFAULTS = {"cuhk_sysu": (10, 3), "prw": (30, 4)}


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _xyxy(box, mode) -> List[float]:
    if mode is None or mode == BoxMode.XYXY_ABS:
        return [float(v) for v in box]
    return [float(v) for v in BoxMode.convert(list(box), mode, BoxMode.XYXY_ABS)]


class PersonSearchEvaluator(DatasetEvaluator):
    """Person-search evaluation of one gallery split (PRW or CUHK-SYSU protocol).

    Args:
        gallery_dataset_name: registered gallery split (e.g. ``prw_gallery``).
        query_dataset_names: the query split(s). The first is the one whose queries run through
            the model (:attr:`query_dataset_name`); for CUHK-SYSU, every name is one gallery size
            (``cuhk_sysu_query_g{N}``; the same queries with another ``gallery`` list): queries
            are run once and matched across sizes by ``query_index``. A single CUHK-SYSU name with
            ``cuhk_gallery_sizes`` expands to ``<base>_g{N}`` for each registered size.
        protocol: "prw" or "cuhk_sysu"; default from the gallery metadata ``protocol``, else
            inferred (queries with a ``gallery`` list: CUHK-SYSU).
        score_thresh: detections below are dropped (search and detection), 0.5.
        det_iou_thresh: detection matching IoU, 0.5.
        prw_modes: PRW galleries to report, the first is the headline ``"search"``.
        cuhk_gallery_sizes: CUHK-SYSU sizes to report (see ``query_dataset_names``); the headline
            ``"search"`` is g100 when present. ``-1`` adds the full gallery (``"search_gfull"``):
            every gallery image but the query's own, targets from the annotations (the
            reference's ``gallery_size=-1``, which crashes there).
        cbgm: CBGM re-ranking (off by default); ``cbgm_k1``/``cbgm_k2``: 0 = protocol default
            (10/3 CUHK-SYSU, 30/4 PRW). The query frame's context persons are taken from the
            gallery detections of that frame (see ``metrics.query_context_from_gallery``).
        topk: top-k values reported.
        output_dir: where the JSON (and for CUHK-SYSU the gallery-size PNG) go; None: nothing written.
        distributed: gather from all processes with ``comm.gather``; evaluate on the main one.
        feature_dtype: storage of gallery embeddings ("float32" reproduces the reference;
            "float16" halves the memory).

    Results (percentages): ``{"search": {"mAP", "top1", "top5", "top10"}, "search_<g>": ...,
    "detection": {"AP", "recall", "AP_labeled", "recall_labeled"}}``.
    """

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
    ) -> None:
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
        gallery_dataset_name: str,
        query_dataset_names: Union[str, Sequence[str]],
        output_dir: Optional[str] = None,
    ) -> "PersonSearchEvaluator":
        """Build from ``cfg.TEST.PERSON_SEARCH`` (see ``stl_search/config.py``)."""
        t = cfg.TEST.PERSON_SEARCH
        return cls(
            gallery_dataset_name,
            query_dataset_names,
            score_thresh=t.SCORE_THRESH,
            det_iou_thresh=t.DET_IOU_THRESH,
            prw_modes=list(t.PRW_MODES),
            cuhk_gallery_sizes=list(t.CUHK_GALLERY_SIZES),
            cbgm=t.CBGM,
            cbgm_k1=t.CBGM_K1,
            cbgm_k2=t.CBGM_K2,
            topk=list(t.TOPK),
            output_dir=output_dir,
            feature_dtype=t.FEATURE_DTYPE,
        )

    @staticmethod
    def _expand_sizes(name: str, sizes: Sequence[int]) -> List[str]:
        """``cuhk_sysu_query`` / ``cuhk_sysu_query_g100`` + sizes -> registered ``..._g{N}`` names."""
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
        self._gallery: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._queries: Dict[int, np.ndarray] = {}

    def process(self, inputs, outputs) -> None:
        """Gallery images: keep each image's detections with score >= ``score_thresh`` (boxes,
        scores as float32, L2-normalised embeddings as ``feature_dtype``), keyed by ``image_id``.
        Outputs with ``query_embedding`` are handed to :meth:`process_queries`."""
        for inp, out in zip(inputs, outputs):
            if "query_embedding" in out:
                self.process_queries([inp], [out])
                continue
            inst = out["instances"]
            if not inst.has("pred_embeddings"):
                raise KeyError("person-search evaluation needs `pred_embeddings` in the instances")
            scores = _to_numpy(inst.scores).astype(np.float32).ravel()
            keep = scores >= self._score_thresh
            boxes = _to_numpy(inst.pred_boxes.tensor).astype(np.float32).reshape(-1, 4)[keep]
            emb = _to_numpy(inst.pred_embeddings)
            dim = emb.shape[-1] if emb.ndim == 2 else (emb.size // max(len(scores), 1))
            emb = _l2_normalize(emb.reshape(len(scores), dim)[keep])
            self._gallery[str(inp["image_id"])] = (
                boxes,
                scores[keep],
                emb.astype(self._feature_dtype),
            )

    def process_queries(self, inputs, outputs) -> None:
        """Queries: the L2-normalised ``query_embedding`` of each input, keyed by ``query_index``."""
        for inp, out in zip(inputs, outputs):
            self._queries[int(inp["query_index"])] = _l2_normalize(
                _to_numpy(out["query_embedding"]).ravel()
            )

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
        image_ids = [str(d["image_id"]) for d in gallery_dicts]
        id_to_index = {k: i for i, k in enumerate(image_ids)}

        gal, gt = self._gallery_arrays(gallery_dicts, image_ids, preds, query_embs)
        q_emb = self._query_matrix(qdicts, query_embs, gal.embeddings.shape[1])
        q_images = np.array(
            [id_to_index.get(str(d["image_id"]), -1) for d in qdicts], dtype=np.int64
        )
        labels, protocols, headline = self._protocols(protocol, qdicts, q_images, gt, id_to_index)

        cbgm = None
        if self._cbgm:
            k1, k2 = (k or d for k, d in zip(self._cbgm_k, CBGM_DEFAULTS[protocol]))
            query_boxes = np.array([d["query_box"] for d in qdicts], dtype=np.float64).reshape(
                -1, 4
            )
            cbgm = replace(
                M.query_context_from_gallery(gal, q_images, query_boxes, k2, self._score_thresh),
                k1=k1,
            )
        searches = M.search_metrics(
            gal, q_emb, protocols, score_thresh=self._score_thresh, topk=self._topk, cbgm=cbgm
        )
        detection = {
            key: M.detection_metrics(
                gt["boxes"],
                gt["splits"],
                gal.boxes,
                gal.scores,
                gal.splits,
                gt_labeled=gt["identities"] >= 0,
                labeled_only=labeled,
                score_thresh=self._score_thresh,
                iou_thresh=self._det_iou_thresh,
            )
            for key, labeled in (("all", False), ("labeled", True))
        }

        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
        by_label = dict(zip(labels, searches))
        results["search"] = self._search_dict(by_label[headline])
        for label, res in by_label.items():
            if protocol == "cuhk_sysu" or label != headline:
                results[f"search_{label}"] = self._search_dict(res)
            if res.num_queries_without_target:
                logger.warning(
                    "%s/%s: %d queries have their target in no gallery image (AP 0, counted in the mean)",
                    self._gallery_name,
                    label,
                    res.num_queries_without_target,
                )
        results["detection"] = {
            "AP": 100.0 * detection["all"].ap,
            "recall": 100.0 * detection["all"].recall,
            "AP_labeled": 100.0 * detection["labeled"].ap,
            "recall_labeled": 100.0 * detection["labeled"].recall,
        }
        logger.info("Person search on %s (%s): %s", self._gallery_name, protocol, dict(results))
        if self._output_dir:
            self._write_outputs(
                results, protocol, labels, headline, searches, detection, qdicts, gallery_dicts, gal
            )
        return results

    def _protocols(self, protocol: str, qdicts, q_images: np.ndarray, gt: Dict, id_to_index: Dict):
        """``(labels, QueryGalleries list, headline label)`` of the data set's protocol."""
        identities = np.array([d["identity"] for d in qdicts], dtype=np.int64)
        if protocol == "prw":
            cameras = np.array([d.get("camera_id", -1) for d in qdicts], dtype=np.int64)
            labels = list(self._prw_modes)
            protocols = [
                M.prw_galleries(
                    q_images,
                    identities,
                    cameras,
                    gt["cameras"],
                    gt["identities"],
                    gt["boxes"],
                    gt["splits"],
                    mode=mode,
                    name=mode,
                )
                for mode in labels
            ]
            return labels, protocols, labels[0]
        labels, protocols = [], []
        for name in self._query_names:
            label, gq = self._cuhk_protocol(name, qdicts, id_to_index)
            labels.append(label)
            protocols.append(gq)
        if self._cuhk_full:  # every gallery image but the query's own; cameras play no role
            no_camera = np.full(len(qdicts), -1, dtype=np.int64)
            protocols.append(
                M.prw_galleries(
                    q_images,
                    identities,
                    no_camera,
                    np.full(gt["cameras"].size, -1, dtype=np.int64),
                    gt["identities"],
                    gt["boxes"],
                    gt["splits"],
                    mode="all",
                    name="gfull",
                )
            )
            labels.append("gfull")
        return labels, protocols, ("g100" if "g100" in labels else labels[0])

    def _search_dict(self, res: "M.SearchResult") -> Dict[str, float]:
        out = {"mAP": 100.0 * res.mAP}
        out.update({f"top{k}": 100.0 * v for k, v in res.accuracy().items()})
        return out

    def _gallery_arrays(self, gallery_dicts, image_ids, preds, query_embs):
        """Detections (dataset order) and ground truth of the gallery split as CSR arrays."""
        dim = next((e.shape[1] for _, _, e in preds.values() if e.ndim == 2 and e.shape[1]), None)
        if dim is None:
            dim = next((len(v) for v in query_embs.values()), 0)
        missing = [k for k in image_ids if k not in preds]
        if missing:
            logger.warning(
                "%d of %d gallery images have no predictions: treated as no detections",
                len(missing),
                len(image_ids),
            )
        empty = (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, dim), self._feature_dtype),
        )
        parts = [preds.get(k, empty) for k in image_ids]
        counts = np.array([len(p[1]) for p in parts], dtype=np.int64)
        gal = M.GalleryDetections(
            boxes=np.concatenate([p[0] for p in parts]) if parts else empty[0],
            scores=np.concatenate([p[1] for p in parts]) if parts else empty[1],
            embeddings=np.concatenate([p[2].reshape(-1, dim) for p in parts])
            if parts
            else empty[2],
            splits=np.r_[0, np.cumsum(counts)].astype(np.int64),
        )
        boxes, idents, gt_counts = [], [], []
        for d in gallery_dicts:
            anns = d.get("annotations", [])
            gt_counts.append(len(anns))
            for a in anns:
                boxes.append(_xyxy(a["bbox"], a.get("bbox_mode")))
                idents.append(int(a.get("identity", -1)))
        gt = {
            "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
            "identities": np.array(idents, dtype=np.int64),
            "splits": np.r_[0, np.cumsum(gt_counts)].astype(np.int64),
            "cameras": np.array([d.get("camera_id", -1) for d in gallery_dicts], dtype=np.int64),
        }
        return gal, gt

    def _query_matrix(self, qdicts, query_embs: Dict[int, np.ndarray], dim: int) -> np.ndarray:
        missing = [d["query_index"] for d in qdicts if int(d["query_index"]) not in query_embs]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(qdicts)} queries of {self.query_dataset_name} have no embedding "
                f"(first: query_index {missing[0]}); run the query split through the model's query mode"
            )
        if not qdicts:
            return np.zeros((0, dim), np.float32)
        return np.stack([query_embs[int(d["query_index"])] for d in qdicts]).astype(np.float32)

    def _cuhk_protocol(self, name: str, qdicts, id_to_index) -> Tuple[str, "M.QueryGalleries"]:
        """One CUHK-SYSU gallery size: its explicit per-query lists, aligned to the model's queries."""
        sdicts = qdicts if name == self.query_dataset_name else DatasetCatalog.get(name)
        row_of = {int(d["query_index"]): i for i, d in enumerate(qdicts)}
        if len(sdicts) != len(qdicts) or any(
            row_of.get(int(s["query_index"])) != i
            or str(s["image_id"]) != str(qdicts[i]["image_id"])
            for i, s in enumerate(sdicts)
        ):
            raise ValueError(
                f"query set {name} does not hold the queries of {self.query_dataset_name} in the same order"
            )
        m = re.search(r"_g(\d+)$", name)
        size = int(m.group(1)) if m else (len(sdicts[0]["gallery"]) if sdicts else 0)
        counts = [len(d["gallery"]) for d in sdicts]
        listing_images = np.array(
            [id_to_index.get(str(g["image_id"]), -1) for d in sdicts for g in d["gallery"]],
            dtype=np.int64,
        )
        boxes, target_listings = [], []
        i = 0
        for d in sdicts:
            for g in d["gallery"]:
                if g.get("bbox") is not None:
                    target_listings.append(i)
                    boxes.append([float(v) for v in g["bbox"]])
                i += 1
        unknown = int((listing_images < 0).sum())
        if unknown:
            logger.warning(
                "%s: %d gallery listings name images outside %s (no detections)",
                name,
                unknown,
                self._gallery_name,
            )
        gq = M.explicit_galleries(
            np.r_[0, np.cumsum(counts)].astype(np.int64),
            listing_images,
            np.array(target_listings, dtype=np.int64),
            np.array(boxes, dtype=np.float64).reshape(-1, 4),
            name=f"g{size}",
        )
        return f"g{size}", gq

    # ---------------------------------------------------------------- outputs
    def _write_outputs(
        self, results, protocol, labels, headline, searches, detection, qdicts, gallery_dicts, gal
    ) -> None:
        """JSON with the metrics and per-query outcomes (``ranked``: the top-10 detections, for the
        headline protocol and
        the PRW modes; per-query AP / hits only for the other CUHK-SYSU sizes, to keep the file
        small), and for CUHK-SYSU the gallery-size curve."""
        det_image = np.repeat(np.arange(gal.num_images), np.diff(gal.splits))
        image_ids = [str(d["image_id"]) for d in gallery_dicts]
        per_protocol = OrderedDict()
        for label, res in zip(labels, searches):
            with_lists = protocol == "prw" or label == headline
            entries = []
            for q, d in enumerate(qdicts):
                e = {
                    "query_index": int(d["query_index"]),
                    "image_id": str(d["image_id"]),
                    "identity": int(d["identity"]),
                    "query_box": [float(v) for v in d["query_box"]],
                    "ap": float(res.ap[q]),
                    "num_gt": int(res.num_gt[q]),
                    "num_tp": int(res.num_tp[q]),
                }
                e.update({f"top{k}": bool(res.hits[q, i]) for i, k in enumerate(res.topk)})
                if with_lists:
                    e["ranked"] = [
                        {
                            "image_id": image_ids[det_image[j]],
                            "box": [round(float(v), 2) for v in gal.boxes[j]],
                            "score": float(s),
                            "correct": bool(c),
                        }
                        for j, s, c in zip(
                            res.ranked_dets[q], res.ranked_scores[q], res.ranked_correct[q]
                        )
                        if j >= 0
                    ]
                entries.append(e)
            per_protocol[label] = {
                "num_queries": res.num_queries,
                "num_queries_without_target": res.num_queries_without_target,
                "queries": entries,
            }
        payload = {
            "gallery_dataset": self._gallery_name,
            "query_datasets": list(self._query_names),
            "protocol": protocol,
            "headline": headline,
            "settings": {
                "score_thresh": self._score_thresh,
                "det_iou_thresh": self._det_iou_thresh,
                "cbgm": self._cbgm,
                "topk": list(self._topk),
            },
            "metrics": results,
            "detection_counts": {
                k: {"num_gt": v.num_gt, "num_tp": v.num_tp, "num_det": v.num_det}
                for k, v in detection.items()
            },
            "searches": per_protocol,
        }
        os.makedirs(self._output_dir, exist_ok=True)
        atomic_write_json(
            payload, os.path.join(self._output_dir, f"person_search_{self._gallery_name}.json")
        )
        if protocol == "cuhk_sysu":
            sizes = [len(gallery_dicts) if label == "gfull" else int(label[1:]) for label in labels]
            plot_gallery_size_curve(
                sizes,
                [100.0 * r.mAP for r in searches],
                [100.0 * r.accuracy().get(1, 0.0) for r in searches],
                os.path.join(self._output_dir, f"gallery_size_{self._gallery_name}.png"),
            )
