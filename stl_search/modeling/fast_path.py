"""The inference fast path: the same model, computed with fewer passes over memory.

Each piece is switched by its own ``TEST.FAST_PATH.*`` key (stl_search/config.py) and none
changes what the model computes beyond float rounding (``tests/modeling/test_fast_path.py``
checks boxes within 0.5 px in the same order and embedding cosine >= 0.9999 against the
reference path):

- ``FOLD_BN``: every batch norm that follows a convolution with fixed statistics (Detectron2's
  ``FrozenBatchNorm2d``, or ``BatchNorm2d`` in eval mode) is folded into that convolution's weight
  and bias, so the norm's separate pass over the activations disappears. In an :class:`IBN`
  norm only the BN half is folded (into the conv's last output channels); the InstanceNorm half
  normalises with per-image statistics and stays.
- ``CHANNELS_LAST``: parameters and the backbone's input in ``torch.channels_last`` (NHWC), the
  layout cuDNN's and oneDNN's convolution kernels prefer (no NCHW<->NHWC conversions around
  each convolution).
- ``TF32`` and ``CUDNN_BENCHMARK``: the process-wide CUDA matmul/cuDNN settings (no effect on the
  CPU); TF32 rounds matmul inputs to 10 mantissa bits, so it is not exact: GPU only, off by
  default.
- ``COMPILE``: ``torch.compile`` of the base nets (stem … res3) with the given mode. The rest of
  the model has data-dependent shapes (proposals, detections) and stays eager; the base nets see
  one shape per image size, so a gallery of one frame size compiles once. On a GPU,
  ``"reduce-overhead"`` also captures them as a CUDA graph. A model built with ``STATIC_SHAPES``
  (read by the meta architecture: :meth:`~stl_search.modeling.meta_arch.PersonSearchRCNN.
  static_gallery_forward`) has no data-dependent shape in its gallery forward: then that whole
  forward is compiled, ``fullgraph=True``, one graph per image size and batch size (one CUDA
  graph under ``"reduce-overhead"``).

The sync-free post-processing is a part of the model, selected by name in the config
(:mod:`~stl_search.modeling.sync_free_postprocess`), not a piece of this module.

Folding changes parameters, so it works on a copy: :func:`prepare_inference_model` returns the
model itself when no piece is on and a folded copy otherwise; the training model is never touched.
The copy is marked prepared (``inference_prepared``), as an exported model marks itself: the
pieces apply to a torch model, once, and never to a model that is already prepared.
Reduced-precision autocast (``TEST.AMP``) is the meta architecture's (it is a property of the
forward, not of the weights): :class:`~stl_search.modeling.meta_arch.PersonSearchRCNN`.
"""

from __future__ import annotations

import copy

import torch
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .backbone.resnet_ibn import IBN

__all__ = [
    "apply_backend_settings",
    "fast_path_enabled",
    "fold_batchnorm",
    "prepare_inference_model",
    "to_channels_last",
]


#: The modes ``TEST.FAST_PATH.COMPILE`` accepts ("" is off): torch.compile's own.
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def fast_path_enabled(cfg: CfgNode) -> bool:
    """Whether any piece of ``TEST.FAST_PATH`` that changes the model is on."""
    fp = cfg.TEST.FAST_PATH
    if fp.COMPILE not in COMPILE_MODES:
        raise ValueError(
            f"TEST.FAST_PATH.COMPILE: {fp.COMPILE!r} is not one of {list(COMPILE_MODES)}"
        )
    return bool(fp.FOLD_BN or fp.CHANNELS_LAST or fp.COMPILE)


def prepare_inference_model(model, cfg: CfgNode):
    """The model to run inference with under ``cfg.TEST.FAST_PATH``: the one door every model
    goes through before inference (predictor, evaluation, search, index).

    - A ``DistributedDataParallel`` model stands for the module it wraps (inference needs no
      gradient synchronisation).
    - A model that declares itself prepared (``inference_prepared = True``: the copy this function
      returns, an exported model) is returned as is, after its ``check_config(cfg)`` when it has
      one (an export checks that ``cfg`` resizes and thresholds as it was exported). So preparing
      twice costs nothing and never folds or wraps a model twice.
    - A torch model (``nn.Module``) is returned itself, untouched (its train/eval mode too),
      when none of ``FOLD_BN``, ``CHANNELS_LAST`` and ``COMPILE`` is on; otherwise as an
      eval-mode deep copy with the enabled pieces applied, marked prepared.

    ``TF32`` and ``CUDNN_BENCHMARK`` are applied process-wide (:func:`apply_backend_settings`).

    Raises:
        TypeError: naming the type of a model that is neither an ``nn.Module`` nor prepared.
    """
    apply_backend_settings(cfg)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    if getattr(model, "inference_prepared", False):
        check_config = getattr(model, "check_config", None)
        if check_config is not None:
            check_config(cfg)
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"cannot prepare a {type(model).__name__} for inference: a model is a torch "
            "nn.Module, or declares itself prepared (inference_prepared = True, as an export does)"
        )
    if not fast_path_enabled(cfg):
        return model
    fast = copy.deepcopy(model).eval()
    if cfg.TEST.FAST_PATH.FOLD_BN:
        fold_batchnorm(fast)
    if cfg.TEST.FAST_PATH.CHANNELS_LAST:
        to_channels_last(fast)
    if cfg.TEST.FAST_PATH.COMPILE and getattr(fast, "static_shapes", False):
        # The whole gallery forward, one graph per image size and batch (no dynamic shapes).
        fast.static_gallery_forward = torch.compile(
            fast.static_gallery_forward,
            mode=cfg.TEST.FAST_PATH.COMPILE,
            fullgraph=True,
            dynamic=False,
        )
    elif cfg.TEST.FAST_PATH.COMPILE:
        fast.backbone.compile(mode=cfg.TEST.FAST_PATH.COMPILE)
    fast.inference_prepared = True
    return fast


def apply_backend_settings(cfg: CfgNode) -> None:
    """Set TF32 matmul/convolution and ``cudnn.benchmark`` from ``TEST.FAST_PATH`` (process-wide,
    CUDA only; turning a key off leaves the current setting alone)."""
    fp = cfg.TEST.FAST_PATH
    if fp.TF32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if fp.CUDNN_BENCHMARK:
        torch.backends.cudnn.benchmark = True


def _norm_affine(norm: nn.Module):
    """``(scale, shift)`` with ``norm(x) == x * scale + shift`` per channel, or None when ``norm``
    is not a batch norm with fixed statistics."""
    if isinstance(norm, _BatchNorm) and not norm.training and norm.track_running_stats:
        weight = norm.weight if norm.affine else torch.ones_like(norm.running_var)
        bias = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
    elif isinstance(norm, FrozenBatchNorm2d):
        weight, bias = norm.weight, norm.bias
    else:
        return None
    # float64 so that the folded weights round once, from the exact products.
    var, mean = norm.running_var.double(), norm.running_mean.double()
    scale = weight.double() * (var + norm.eps).rsqrt()
    return scale, bias.double() - mean * scale


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor, start: int) -> None:
    """Fold ``x * scale + shift`` on output channels ``start:`` of ``conv`` into its parameters."""
    weight = conv.weight.double()
    bias = (
        conv.bias.double()
        if conv.bias is not None
        else torch.zeros(conv.out_channels, dtype=torch.float64, device=weight.device)
    )
    weight[start:] *= scale.reshape(-1, *([1] * (weight.dim() - 1)))
    bias[start:] = bias[start:] * scale + shift
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    else:
        conv.bias.copy_(bias.to(conv.bias.dtype))


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every fixed-statistics batch norm of a Detectron2 ``Conv2d(norm=...)`` into the conv,
    in place (inference only: the folded model has no norm parameters left to train).

    A plain norm becomes ``None``; an :class:`IBN` norm keeps its InstanceNorm half and its BN half
    becomes ``nn.Identity``. Norms in training mode (batch statistics) are left alone.

    Returns:
        The number of norms folded.
    """
    folded = 0
    for module in model.modules():
        if not isinstance(module, Conv2d) or module.norm is None:
            continue
        norm = module.norm
        if isinstance(norm, IBN):
            affine = _norm_affine(norm.BN)
            if affine is not None:
                _fold_into(module, *affine, start=norm.half)
                norm.BN = nn.Identity()
                folded += 1
            continue
        affine = _norm_affine(norm)
        if affine is not None:
            _fold_into(module, *affine, start=0)
            module.norm = None
            folded += 1
    return folded


def _input_to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return (x.contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
    return args


def to_channels_last(model: nn.Module) -> nn.Module:
    """4-D parameters and the backbone's input in ``channels_last``, in place. Convolutions then
    produce NHWC outputs, which the following layers keep (:class:`IBN` preserves the layout)."""
    model.to(memory_format=torch.channels_last)
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        backbone.register_forward_pre_hook(_input_to_channels_last)
    return model
