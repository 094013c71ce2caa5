"""``add_stl_search_config(cfg)``: every configuration key this project adds to Detectron2's.

Keys are grouped by the part of the pipeline that reads them; each is documented here, where it is
defined, with the paper's symbol or section where there is one. Standard Detectron2 keys keep their
meaning (e.g. ``INPUT.MIN_SIZE_TRAIN``/``MAX_SIZE_TRAIN`` implement the paper's 640/960 resize rule;
``MODEL.RESNETS.*`` sizes the ResNet-IBN-a backbone).

Namespaces:
    MODEL.IBN            ResNet-IBN-a backbone (shared by person search and STL pretraining)
    MODEL.BATCH_NORM     BatchNorm under data-parallel training (warning, synchronised BN)
    MODEL.PERSON_SEARCH  identity classes and the ID loss of the person-search model
    MODEL.ID_HEAD        identification nets (res4 + res5 + GAP + BN) and their RoI pooling
    MODEL.MRFP           Multi-level RoI Fusion Pooling (paper section 3.2)
    DATASETS.QUERY       query splits, parallel to DATASETS.TEST (the gallery splits)
    TEST.PERSON_SEARCH   evaluation protocol (paper section 4.2)
    REID                 STL step 1: Re-ID pretraining on person crops (paper section 3.1, 4.3)
    STL                  STL step 2 and the end-to-end pipeline
"""

from __future__ import annotations

from detectron2.config import CfgNode as CN


def add_stl_search_config(cfg: CN) -> CN:
    """Add every stl-search key, with its default, to a Detectron2 config (in place; returned)."""
    _add_backbone_config(cfg)
    _add_batch_norm_config(cfg)
    _add_person_search_model_config(cfg)
    _add_data_config(cfg)
    _add_test_config(cfg)
    _add_reid_config(cfg)
    _add_stl_config(cfg)
    return cfg


def _add_backbone_config(cfg: CN) -> None:
    cfg.MODEL.IBN = CN()
    # Stages whose bottleneck blocks use IBN-a: InstanceNorm on the first RATIO of the channels
    # after each block's first 1x1 conv, BatchNorm on the rest (IBN-Net, ResNet50-IBN-a: res2-res4).
    # An empty list builds a plain ResNet.
    cfg.MODEL.IBN.STAGES = ["res2", "res3", "res4"]
    cfg.MODEL.IBN.RATIO = 0.5
    # Stride of the first block of res5 (paper 3.3: "we modify the convolution stride of conv5_x
    # to 1").
    cfg.MODEL.IBN.RES5_STRIDE = 1


def _add_batch_norm_config(cfg: CN) -> None:
    # BatchNorm under data-parallel training (stl_search/engine/batch_norm.py). The trainable BN
    # layers (MODEL.RESNETS.NORM "BN", and the embedding BN) see SOLVER.IMS_PER_BATCH / #processes
    # images each; the authors trained with 8 per GPU.
    cfg.MODEL.BATCH_NORM = CN()
    # Warn when a process gets fewer images than this and BN is neither synchronised nor frozen.
    cfg.MODEL.BATCH_NORM.MIN_IMAGES_PER_PROCESS = 4
    # Synchronised BN (torch.nn.SyncBatchNorm, CUDA only) for every trainable BatchNorm layer,
    # embedding BN included, when training runs in more than one process; state-dict keys are
    # unchanged, so checkpoints load with and without it. Recommended with 8 GPUs x 2 images.
    cfg.MODEL.BATCH_NORM.SYNC = False


def _add_person_search_model_config(cfg: CN) -> None:
    # Inference box step without host reads of device values between its steps
    # (stl_search/modeling/sync_free_postprocess.py): dropped candidates get a -inf score instead
    # of being filtered out and are compacted once per batch; each NMS is the only other host
    # read. Same detections in the same order. Needed with MODEL.PROPOSAL_GENERATOR.NAME
    # "SyncFreeRPN" (whose dropped proposals it skips), which the paper configs select.
    cfg.MODEL.ROI_HEADS.SYNC_FREE_INFERENCE = False
    cfg.MODEL.PERSON_SEARCH = CN()
    # Number of labeled training identities (the ID classifier's classes). 0: the trainer reads it
    # from the training set's metadata (``num_identities``), an inference model from the weights
    # file's classifier (stl_search.engine.model), before the model is built.
    cfg.MODEL.PERSON_SEARCH.NUM_IDENTITIES = 0
    # CB_CE only: labeled boxes per training identity (person_id 0..NUM_IDENTITIES-1). Empty: the
    # trainer counts them in DATASETS.TRAIN[0] before the model is built.
    cfg.MODEL.PERSON_SEARCH.IDENTITY_COUNTS = []
    # ID loss L_id of Eq. 3: "CE" (paper), "CB_CE" (class-balanced, Table 4), "FOCAL" (Table 4),
    # "OIM" (look-up table + unlabeled queue, for the OIM rows of Table 3).
    cfg.MODEL.PERSON_SEARCH.ID_LOSS = "CE"
    cfg.MODEL.PERSON_SEARCH.ID_LOSS_WEIGHT = 1.0
    # Class-balanced CE: effective-number weighting (1 - beta) / (1 - beta^n_c).
    cfg.MODEL.PERSON_SEARCH.CB_BETA = 0.9999
    # Focal loss focusing parameter gamma.
    cfg.MODEL.PERSON_SEARCH.FOCAL_GAMMA = 2.0
    # OIM: cosine-similarity scale, look-up-table momentum, circular queue length for unlabeled.
    cfg.MODEL.PERSON_SEARCH.OIM_SCALAR = 30.0
    cfg.MODEL.PERSON_SEARCH.OIM_MOMENTUM = 0.5
    cfg.MODEL.PERSON_SEARCH.OIM_QUEUE_SIZE = 5000
    # Which boxes train the identification branch: "gt" (ground-truth boxes only, as the authors'
    # code) or "proposals" (foreground proposals matched to a labeled ground truth).
    cfg.MODEL.PERSON_SEARCH.ID_TRAIN_BOXES = "gt"
    # Loading MODEL.WEIGHTS to start training (not --resume), only the parts an STL or ImageNet
    # initialisation leaves untrained may be missing or misshapen: RPN, box head and predictor, ID
    # classifier, and the embedding BN when the file has none (Re-ID pretraining: BN neck,
    # classifier, centres). Anything else (a ResNet-18 file for a ResNet-50 model, another width)
    # is an error naming the keys; True makes it a warning and trains those weights from their
    # initialisation. --eval-only, search, export and --resume always need every weight they use
    # (stl_search.engine.checkpoint, stl_search.utils.checkpoint).
    cfg.MODEL.ALLOW_PARTIAL_WEIGHTS = False

    cfg.MODEL.ID_HEAD = CN()
    # Feature map for single-level RoI pooling (the baseline), and the high level of MRFP.
    cfg.MODEL.ID_HEAD.IN_FEATURE = "res3"
    # RoI Align output (height, width) on IN_FEATURE: 32x16 on the stride-8 map (paper 3.2).
    cfg.MODEL.ID_HEAD.POOLER_RESOLUTION = (32, 16)
    cfg.MODEL.ID_HEAD.POOLER_SAMPLING_RATIO = 2
    # "ROIAlignV2" = RoI Align with aligned=True (the authors' code).
    cfg.MODEL.ID_HEAD.POOLER_TYPE = "ROIAlignV2"
    # Embedding size: the output channels of res5 (2048 for ResNet-50/101).
    cfg.MODEL.ID_HEAD.EMBEDDING_DIM = 2048

    cfg.MODEL.MRFP = CN()
    # Multi-level RoI Fusion Pooling: RoI Align on LOW_FEATURE at LOW_RESOLUTION, a neck (its own
    # copy of res3) to the high level's size, pixel-wise sum with the high-level RoI features.
    # False: single-level RoI Align on MODEL.ID_HEAD.IN_FEATURE (the paper's "Baseline").
    cfg.MODEL.MRFP.ENABLED = True
    cfg.MODEL.MRFP.LOW_FEATURE = "res2"
    cfg.MODEL.MRFP.LOW_RESOLUTION = (64, 32)
    cfg.MODEL.MRFP.SAMPLING_RATIO = 2


def _add_data_config(cfg: CN) -> None:
    # Query splits, one per entry of DATASETS.TEST (the gallery splits), in the same order:
    # evaluation runs each gallery through detection and each query box through the query mode.
    cfg.DATASETS.QUERY = ()
    # Person-search JSON files (docs/own-data.md) registered when the config is loaded (every
    # entry point): "path/to/NAME.json" registers NAME_train, NAME_gallery and NAME_query, images
    # under the file's "image_root" (else its folder). Relative paths: from the working directory.
    cfg.DATASETS.PERSON_SEARCH_JSON = ()
    # Probability of the horizontal flip, the only training augmentation of the person-search model
    # (PersonSearchDatasetMapper, train mode; 0 disables it). The resize rule is Detectron2's
    # INPUT.{MIN,MAX}_SIZE_{TRAIN,TEST}. Data roots are not config keys: the registered names
    # (stl_search/data/datasets/builtin.py) live under $DETECTRON2_DATASETS (default "datasets/"),
    # the synthetic set under $DETECTRON2_DATASETS/synthetic_prw, generated on first use.
    cfg.INPUT.HFLIP_PROB = 0.5


def _add_test_config(cfg: CN) -> None:
    cfg.TEST.PERSON_SEARCH = CN()
    # Detections with a score below this are dropped before search and detection scoring (4.3).
    cfg.TEST.PERSON_SEARCH.SCORE_THRESH = 0.5
    # A detection matches a ground-truth box at IoU >= this (detection AP / recall, Table 5).
    cfg.TEST.PERSON_SEARCH.DET_IOU_THRESH = 0.5
    # PRW gallery modes to report: "all" (every test frame but the query's own; the paper's) and
    # "multi_view" (frames of the other cameras only).
    cfg.TEST.PERSON_SEARCH.PRW_MODES = ["all", "multi_view"]
    # CUHK-SYSU gallery sizes to report (TestG<size>.mat); 100 is the headline. -1 adds the full
    # gallery (every gallery image but the query's own; SeqNet's gallery_size=-1, which crashes
    # there).
    cfg.TEST.PERSON_SEARCH.CUHK_GALLERY_SIZES = [50, 100, 500, 1000, 2000, 4000]
    # Context bipartite graph matching re-ranking (off in the paper).
    cfg.TEST.PERSON_SEARCH.CBGM = False
    # CBGM: re-rank the gallery images of the top-K1 detections, with K2 query-side graph nodes
    # (the query box + K2-1 persons of the query frame). 0 = the protocol's default
    # (CUHK-SYSU 10 / 3, PRW 30 / 4, as SeqNet).
    cfg.TEST.PERSON_SEARCH.CBGM_K1 = 0
    cfg.TEST.PERSON_SEARCH.CBGM_K2 = 0
    # Storage of the gallery embeddings during evaluation: "float32" (exact) or "float16" (half
    # the memory; the similarities are still computed in float32).
    cfg.TEST.PERSON_SEARCH.FEATURE_DTYPE = "float32"
    # Top-k values reported (top1 is the paper's "top-1").
    cfg.TEST.PERSON_SEARCH.TOPK = [1, 5, 10]
    # Search rule. "seqnet": SeqNet's eval_func.py (one true positive per gallery image, IoU >=
    # min(0.5, wh / ((w + 10)(h + 10))) with the target's box), the literature's numbers.
    # "authors": the same, plus the paper's authors' rule reported beside it as search_authors*
    # (each detection takes the identity of its best-overlapping ground truth at IoU > 0.5, several
    # true positives per image possible; stl_search/evaluation/search_authors.py).
    cfg.TEST.PERSON_SEARCH.PROTOCOL = "seqnet"
    # Retrieval grid of the evaluation report (OUTPUT_DIR/.../retrieval_<gallery>.png): this many
    # queries (spread over the query list) x their top-k hits, true / false hits framed in green /
    # red. (0, 0) draws none.
    cfg.TEST.PERSON_SEARCH.RETRIEVAL_GRID = (8, 5)

    # Images (gallery pass) or query images (query pass) per inference batch, per process: the
    # evaluation's test loaders (stl_search/data/build.py). Detectron2 pads a batch to its largest
    # image, which moves boxes / embeddings only by float rounding (tests/modeling/test_fast_path.py
    # measures it); 1 keeps the metrics bit-identical to one image at a time.
    cfg.TEST.IMS_PER_BATCH = 1

    # Inference fast path (stl_search/modeling/fast_path.py), each piece exact to float rounding
    # except TF32. Applied to a copy of the model by prepare_inference_model (evaluation, search).
    cfg.TEST.FAST_PATH = CN()
    # Fold every fixed-statistics BatchNorm (FrozenBN, or BN in eval mode) into the preceding
    # convolution; IBN's InstanceNorm half stays.
    cfg.TEST.FAST_PATH.FOLD_BN = False
    # Parameters and the backbone input in torch.channels_last (NHWC) memory format.
    cfg.TEST.FAST_PATH.CHANNELS_LAST = False
    # CUDA only, process-wide: TF32 matmuls / convolutions (10-bit mantissa inputs: not exact)
    # and cudnn.benchmark (autotuned convolution algorithms; pays off for fixed input sizes).
    cfg.TEST.FAST_PATH.TF32 = False
    cfg.TEST.FAST_PATH.CUDNN_BENCHMARK = False
    # torch.compile the base nets (stem..res3, most of the work) with this mode: "" (off),
    # "default", "reduce-overhead" (CUDA graphs on a GPU), "max-autotune" or
    # "max-autotune-no-cudagraphs". The first image of each new size pays the compilation
    # (seconds to a minute); worth it for a long gallery of one frame size.
    cfg.TEST.FAST_PATH.COMPILE = ""
    # Gallery inference with shapes fixed by the config and the image batch (the RPN's and the
    # box step's NMS as keep masks, fixed-size detection sets with a valid mask, compacted after
    # the forward): no host read inside it, so torch.compile can capture it whole
    # (stl_search/modeling/static_postprocess.py). Same detections and embeddings. Every one of
    # the TEST.DETECTIONS_PER_IMAGE rows is embedded: set it to the most persons a frame holds.
    cfg.TEST.FAST_PATH.STATIC_SHAPES = False
    # The parallel rounds of each NMS of that forward (Cluster-NMS: exact once a round changes
    # nothing). A batch that needs more is recomputed on the dynamic path, with a warning: the
    # same numbers whatever the value; more rounds cost more GPU time, fewer more fallbacks.
    # The trained synthetic model's RPN needed at most 14 at 1000 and at 6000 candidates
    # (benchmarks/static_nms_rounds.py); 24 leaves room for denser scenes.
    cfg.TEST.FAST_PATH.STATIC_NMS_ROUNDS = 24
    # The sync-free post-processing is a model part chosen by name, not a fast-path switch:
    # MODEL.PROPOSAL_GENERATOR.NAME "SyncFreeRPN" + MODEL.ROI_HEADS.SYNC_FREE_INFERENCE True.
    old = "TEST.FAST_PATH.SYNC_FREE_POSTPROCESS"
    if not cfg.key_is_renamed(old):
        cfg.register_renamed_key(
            old,
            "MODEL.PROPOSAL_GENERATOR.NAME 'SyncFreeRPN' and MODEL.ROI_HEADS.SYNC_FREE_INFERENCE "
            "True",
            "remove the key; with False, nothing else to set (the reference path is the default)",
        )

    # Inference under torch.autocast: the convolutions and matmuls in DTYPE ("float16" or
    # "bfloat16"; bfloat16 on the CPU), RoI pooling from float32 features, outputs in float32.
    cfg.TEST.AMP = CN()
    cfg.TEST.AMP.ENABLED = False
    cfg.TEST.AMP.DTYPE = "float16"


def _add_reid_config(cfg: CN) -> None:
    # STL step 1: pretrain the whole ResNet-IBN-a as a Re-ID model on person crops cut from the
    # training scenes (DATASETS.TRAIN); Re-ID test set from DATASETS.QUERY + DATASETS.TEST.
    cfg.REID = CN()
    cfg.REID.INPUT = CN()
    # Crop size (height, width) fed to the Re-ID network (paper 3.1: 256x128).
    cfg.REID.INPUT.SIZE = (256, 128)
    cfg.REID.INPUT.FLIP_PROB = 0.5
    # Zero padding before the random crop back to SIZE (BoT recipe).
    cfg.REID.INPUT.PADDING = 10
    # Random erasing probability (BoT recipe).
    cfg.REID.INPUT.ERASE_PROB = 0.5
    # Cut every crop once into OUTPUT_DIR/crop_cache/*.npy (memory-mapped by the data workers)
    # instead of decoding its scene image at every access: worth it for PRW / CUHK-SYSU frames.
    cfg.REID.INPUT.CACHE_CROPS = False

    cfg.REID.SAMPLER = CN()
    # Class-aware sampling: P identities x K instances per batch (PRW 16x4, CUHK-SYSU 64x4).
    # Used only when the triplet loss is on; otherwise batches of P*K random crops. P counts the
    # identities of one iteration over all processes (each gets P / #processes). The sampler's
    # own epoch is one pass over the identities (each drawn once, uniformly: class-aware), not
    # the LR schedule's epoch (REID.SOLVER.ITERS_PER_EPOCH).
    cfg.REID.SAMPLER.P = 16
    cfg.REID.SAMPLER.K = 4

    cfg.REID.LOSS = CN()
    # Eq. 1: L_pre = L_id + L_tri + lambda * L_center. Table 6 rows: softmax; +triplet; +center.
    cfg.REID.LOSS.TRIPLET = True
    cfg.REID.LOSS.TRIPLET_MARGIN = 0.3
    # Soft-margin triplet: log(1 + exp(d_ap - d_an)) instead of the margin hinge.
    cfg.REID.LOSS.TRIPLET_SOFT_MARGIN = False
    cfg.REID.LOSS.CENTER = True
    # lambda of Eq. 1.
    cfg.REID.LOSS.CENTER_WEIGHT = 5e-4
    # Learning rate of the SGD optimiser that updates the centres (BoT recipe).
    cfg.REID.LOSS.CENTER_LR = 0.5
    # Label smoothing of the ID (cross-entropy) loss; 0 disables it.
    cfg.REID.LOSS.LABEL_SMOOTHING = 0.1

    cfg.REID.SOLVER = CN()
    # Adam, lr 3.5e-4, linear warm-up from 3.5e-5 over 10 epochs, x0.1 at epochs 40 and 70,
    # 120 epochs, weight decay 5e-4 (paper 4.3). Epochs become iterations from the crop count.
    cfg.REID.SOLVER.OPTIMIZER = "ADAM"
    cfg.REID.SOLVER.BASE_LR = 3.5e-4
    cfg.REID.SOLVER.WEIGHT_DECAY = 5e-4
    cfg.REID.SOLVER.MAX_EPOCHS = 120
    cfg.REID.SOLVER.STEPS_EPOCHS = (40, 70)
    cfg.REID.SOLVER.GAMMA = 0.1
    cfg.REID.SOLVER.WARMUP_EPOCHS = 10
    cfg.REID.SOLVER.WARMUP_FACTOR = 0.1
    # Checkpoint every this many epochs (atomic; --resume continues from the last one).
    cfg.REID.SOLVER.CHECKPOINT_PERIOD_EPOCHS = 10
    # Iterations per epoch; 0: number of crops // (P*K).
    cfg.REID.SOLVER.ITERS_PER_EPOCH = 0
    # Re-ID evaluation (mAP, rank-1 on the crop test set) every this many epochs; 0: at the end.
    # The test set: query crops of DATASETS.QUERY[0] against gallery crops of DATASETS.TEST[0].
    cfg.REID.TEST_PERIOD_EPOCHS = 0
    # Crops per batch (per process) for Re-ID feature extraction.
    cfg.REID.TEST_IMS_PER_BATCH = 128
    # Log (CommonMetricPrinter / metrics.json) every this many iterations.
    cfg.REID.LOG_PERIOD = 20


def _add_stl_config(cfg: CN) -> None:
    cfg.STL = CN()
    # STL step 2: at the end of pretraining, write the person-search initialisation here
    # (relative to OUTPUT_DIR); "" disables the export.
    cfg.STL.EXPORT_NAME = "stl_init.pth"
    # Also write the MRFP neck (a copy of res3, ``roi_heads.id_pooler.neck.*``); turn off for a
    # person-search model without MRFP (the paper's single-level "Baseline").
    cfg.STL.EXPORT_MRFP_NECK = True
