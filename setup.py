"""stl-search: one-step person search (STL + MRFP) as a Detectron2 extension.

Install into an environment that already has torch, torchvision and Detectron2
(``bash scripts/bootstrap.sh`` builds one from the package registries alone)::

    pip install -e .

Detectron2 is not on PyPI, so it is not listed in ``install_requires``: see README.md.
"""

from setuptools import find_packages, setup

setup(
    name="stl-search",
    version="0.1.0",
    description="Subtask-dominated Transfer Learning and Multi-level RoI Fusion Pooling "
    "for one-step person search, on Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=("stl_search", "stl_search.*")),
    install_requires=[
        "torch>=1.10",
        "torchvision",
        "fvcore",
        "numpy",
        "scipy",
        "opencv-python",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest"],
        # python -m stl_search.export --format onnx and its runtime (stl_search.export).
        "export": ["onnx", "onnxruntime"],
        # python -m stl_search.serve (the local search page).
        "serve": ["flask"],
    },
    entry_points={
        "console_scripts": [
            "stl-search-stl-init=stl_search.reid.stl_init:main",
        ]
    },
)
