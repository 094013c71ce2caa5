"""A synthetic long-tail person-search data set, written in the PRW format.

Why: PRW and CUHK-SYSU cannot be shipped, but the pipeline (Re-ID pretraining, person-search
training, evaluation) must be shown to learn on CPU in minutes. The set is written exactly in
the PRW on-disk format (``frames/``, ``annotations/*.jpg.mat`` with ``box_new``,
``frame_{train,test}.mat``, CRLF ``query_info.txt``, ``ID_{train,test}.mat``), so that the PRW
loader is the code that reads it.

What it contains (all drawn from one seed, so the same seed gives the same bytes):

- cameras with their own background (street / park / hall styles) and lighting (gain, colour
  cast, spatial gradient);
- identities with a fixed appearance: shirt colour + pattern (solid, stripes, checks, logo) and
  sleeve length, trouser colour + type (long, shorts, skirt), shoes, hair colour + length, skin,
  hat, bag (backpack, shoulder bag, handbag) and body proportions. Attributes are shared between
  identities (11 shirt colours for 150 identities), and any two labeled identities differ in at
  least two of the main attributes: combinations identify people, not single colours;
- per instance: pose (walking phase, facing left / right / front), scale from the camera's
  perspective, position (sometimes partly out of the frame: negative coordinates), partial
  occlusion (low walls, poles, other people), illumination, texture noise, blur, JPEG;
- long-tail instance counts for the training identities (``max_instances * rank^-tail_exponent``:
  a few identities in dozens of frames, many seen once or twice), unlabeled passers-by
  (pid -2), and a test split of disjoint identities, each seen in at least two cameras; one query
  per test identity whose identity appears in other gallery frames, including other cameras.

Modules: ``appearance`` (identity attributes), ``render`` (one person), ``scene`` (camera
backgrounds, frame composition), ``generate`` (spec, presets, plan, PRW-format files) and
``__main__`` (command line)::

    python -m stl_search.data.datasets.synthetic --out datasets/synthetic_prw [--seed 0] \\
        [--preset tiny]
"""

from .generate import (
    COMPLETE_MARKER,
    PRESETS,
    SyntheticSpec,
    ensure_generated,
    generate,
    long_tail_counts,
)

__all__ = [
    "COMPLETE_MARKER",
    "PRESETS",
    "SyntheticSpec",
    "ensure_generated",
    "generate",
    "long_tail_counts",
]
