"""STL (paper 3.1): step 1, Re-ID pretraining of the whole backbone on person crops, and step 2,
its export as the person-search initialisation.

Modules: ``model`` (ReIDNet), ``losses`` (ID, batch-hard triplet, centre), ``evaluation`` (Re-ID
mAP / CMC), ``trainer`` (Detectron2 training loop, ``run_pretraining``), ``stl_init`` (ReIDNet →
person-search keys). The crop set, its samplers, BoT augmentations and loaders are data:
``stl_search.data.reid``. Entry point: ``projects/stl_search/pretrain_reid.py``. Nothing here is
imported by ``stl_search.modeling``.
"""
