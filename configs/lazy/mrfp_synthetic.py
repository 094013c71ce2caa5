"""LazyConfig of the person-search model with MRFP on the built-in synthetic set: the model, data
loaders, optimizer and schedule of ``configs/synthetic/person_search.yaml``, as Detectron2's
``tools/lazyconfig_train_net.py`` expects them (``model``, ``dataloader.{train,test,evaluator}``,
``optimizer``, ``lr_multiplier``, ``train``):

    python tools/lazyconfig_train_net.py --config-file configs/lazy/mrfp_synthetic.py

The modules are Detectron2's and stl-search's own classes, called with the arguments their
``from_config`` derives from the YAML config (the two build the same structure: same state-dict
keys and shapes, ``tests/dropin/test_lazy_config.py``). ``dataloader.test`` is the gallery split
followed by its queries, so that ``inference_on_dataset`` with the evaluator runs both passes of
person search. ``train.init_checkpoint`` may name an STL export (configs/STL/synthetic.yaml);
empty trains from scratch. Sizes: ResNet-18-IBN-a at half width (stem and res2 32 channels, res3
64, the identification nets' res4 128 and res5 256 = the embedding), RPN and RoI heads on res3
(stride 8), MRFP from res2 (stride 4).
"""

import torch
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.backbone.resnet import BasicBlock
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers
from detectron2.solver import WarmupParamScheduler, get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from stl_search.data.build import ChainedLoader
from stl_search.data.datasets import num_training_identities
from stl_search.data.mapper import PersonSearchDatasetMapper
from stl_search.evaluation import PersonSearchEvaluator
from stl_search.modeling import (
    IdentificationNet,
    MultiLevelRoIFusionPooler,
    PersonSearchRCNN,
    PersonSearchROIHeads,
    SingleLevelRoIPooler,
)
from stl_search.modeling.backbone.resnet_ibn import IBNBasicBlock, make_sequential_stage
from stl_search.modeling.losses import SoftmaxIDLoss
from stl_search.modeling.separable_roi_align import SeparableRoIAlign
from stl_search.modeling.sync_free_postprocess import SyncFreeRPN

TRAIN, GALLERY, QUERY = "synthetic_train", "synthetic_gallery", "synthetic_query"
IMAGE_FORMAT = "RGB"
NORM = "BN"
IBN_RATIO = 0.5


def _stage(block_class, in_channels, out_channels, first_stride, **ibn):
    """Arguments of one two-block ResNet-18 stage (``ResNet.make_stage``)."""
    return dict(
        block_class=block_class,
        num_blocks=2,
        in_channels=in_channels,
        out_channels=out_channels,
        stride_per_block=[first_stride, 1],
        norm=NORM,
        **ibn,
    )


# IBN-a in res2, res3, res4 (MODEL.IBN.STAGES); res5's first stride is 1 (MODEL.IBN.RES5_STRIDE).
_RES2 = _stage(IBNBasicBlock, 32, 32, 1, ibn_ratio=IBN_RATIO)
_RES3 = _stage(IBNBasicBlock, 32, 64, 2, ibn_ratio=IBN_RATIO)
_RES4 = _stage(IBNBasicBlock, 64, 128, 2, ibn_ratio=IBN_RATIO)
_RES5 = _stage(BasicBlock, 128, 256, 1)

model = L(PersonSearchRCNN)(
    backbone=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=32, norm=NORM),
        stages=[L(ResNet.make_stage)(**_RES2), L(ResNet.make_stage)(**_RES3)],
        out_features=["res2", "res3"],
        freeze_at=0,
    ),
    # SyncFreeRPN + the ROI heads' sync_free_inference: the sync-free inference post-processing
    # that the YAML configs select; training is Detectron2's.
    proposal_generator=L(SyncFreeRPN)(
        in_features=["res3"],
        head=L(StandardRPNHead)(in_channels=64, num_anchors=12, conv_dims=[128]),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[16, 32, 64, 128]], aspect_ratios=[[1.0, 2.0, 3.0]], strides=[8], offset=0.0
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),
        post_nms_topk=(500, 100),
        nms_thresh=0.7,
        smooth_l1_beta=0.1111,
    ),
    roi_heads=L(PersonSearchROIHeads)(
        num_classes=1,
        batch_size_per_image=64,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        box_in_features=["res3"],
        box_pooler=L(ROIPooler)(
            output_size=7, scales=(1.0 / 8,), sampling_ratio=2, pooler_type="ROIAlignV2"
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=ShapeSpec(channels=64, height=7, width=7), conv_dims=[], fc_dims=[256, 256]
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=256),
            box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
            num_classes=1,
            test_score_thresh=0.5,
            test_nms_thresh=0.3,
            test_topk_per_image=100,
            smooth_l1_beta=0.1111,
        ),
        # MRFP: neck(RoIAlign(res2, 32x16)) + RoIAlign(res3, 16x8); the neck is a res3 copy.
        id_pooler=L(MultiLevelRoIFusionPooler)(
            low=L(SingleLevelRoIPooler)(
                in_feature="res2",
                pooler=L(SeparableRoIAlign)(
                    output_size=(32, 16), spatial_scale=1.0 / 4, sampling_ratio=2
                ),
                channels=32,
                stride=4,
            ),
            high=L(SingleLevelRoIPooler)(
                in_feature="res3",
                pooler=L(SeparableRoIAlign)(
                    output_size=(16, 8), spatial_scale=1.0 / 8, sampling_ratio=2
                ),
                channels=64,
                stride=8,
            ),
            neck=L(make_sequential_stage)(**_RES3),
        ),
        id_head=L(IdentificationNet)(
            res4=L(make_sequential_stage)(**_RES4),
            res5=L(make_sequential_stage)(**_RES5),
            embedding_dim=256,
        ),
        # The classifier has one class per labeled training identity, read from the split.
        id_loss=L(SoftmaxIDLoss)(embedding_dim=256, num_ids=L(num_training_identities)(name=TRAIN)),
        id_loss_weight=1.0,
        id_train_boxes="gt",
        sync_free_inference=True,
    ),
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format=IMAGE_FORMAT,
)


def _test_mapper(mode):
    return L(PersonSearchDatasetMapper)(
        mode=mode,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=192, max_size=320, sample_style="choice")
        ],
        image_format=IMAGE_FORMAT,
    )


dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names=TRAIN, filter_empty=True),
        mapper=L(PersonSearchDatasetMapper)(
            mode="train",
            augmentations=[
                L(T.ResizeShortestEdge)(
                    short_edge_length=(192,), max_size=320, sample_style="choice"
                ),
                L(T.RandomFlip)(prob=0.5, horizontal=True, vertical=False),
            ],
            image_format=IMAGE_FORMAT,
        ),
        total_batch_size=4,
        num_workers=0,
    ),
    test=L(ChainedLoader)(
        loaders=[
            L(build_detection_test_loader)(
                dataset=L(get_detection_dataset_dicts)(names=GALLERY, filter_empty=False),
                mapper=_test_mapper("test"),
                num_workers=0,
            ),
            L(build_detection_test_loader)(
                dataset=L(get_detection_dataset_dicts)(names=QUERY, filter_empty=False),
                mapper=_test_mapper("query"),
                num_workers=0,
            ),
        ]
    ),
    evaluator=L(PersonSearchEvaluator)(
        gallery_dataset_name=GALLERY, query_dataset_names=QUERY, score_thresh=0.5
    ),
)

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.01,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
)

# 750 iterations, lr x0.1 from iteration 500, linear warm-up over the first 50 from 1%.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[500, 750]),
    warmup_length=50 / 750,
    warmup_factor=0.01,
)

train = dict(
    output_dir="./output/lazy/mrfp_synthetic",
    init_checkpoint="",
    max_iter=750,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=150, max_to_keep=100),
    eval_period=750,
    log_period=20,
    device="cpu",
)
