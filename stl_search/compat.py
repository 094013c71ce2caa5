"""The only module that knows Detectron2 v0.6 from current main.

Both report ``detectron2.__version__ == "0.6"``, so differences are feature-detected here and
nowhere else. See README, "Compatibility".
"""
from __future__ import annotations

from detectron2.modeling import Backbone

#: True on Detectron2 main (padding constraints were added after v0.6).
IS_D2_MAIN: bool = hasattr(Backbone, "padding_constraints")
