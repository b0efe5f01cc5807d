"""Installation script for sparsenu.

torch is deliberately constrained, not pinned, here: the README's commands pin
``torch==2.13.0`` (a CPU wheel on the build machines); an unconstrained ``torch``
would pull several GB of CUDA packages on a fresh machine.
"""
from setuptools import find_packages, setup

setup(
    name="sparsenu",
    version="0.1.0",
    description=(
        "Detector-robust representations of liquid-argon TPC data with sparse "
        "3D convolutions and contrastive learning"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sparsenu", "sparsenu.*"]),
    package_data={"sparsenu": ["py.typed", "data/schemas/*.json", "sparse/csrc/*.cpp", "sim/data/*.csv"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.2,<2.14",
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",
        "pyyaml>=6.0",
        "pydantic>=2.6",
        "tqdm>=4.60",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "pandas>=2.0",
        "particle>=0.23",
        "hepunits>=2.3",
        "jsonschema>=4.0",
        "ninja>=1.11",
        "isal>=1.6",  # ISA-L deflate: compresses sparse-tensor chunks ~10x faster than zlib  # builds the C++ sparse-convolution kernels on first use
    ],
    extras_require={
        "test": ["pytest>=7"],
        "tensorboard": ["tensorboard>=2.10"],
    },
    entry_points={"console_scripts": ["sparsenu=sparsenu.cli:main"]},
)
