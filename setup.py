"""tfrecall: two-tower recall (candidate retrieval) on TensorFlow / Keras 2."""

from setuptools import find_packages, setup

setup(
    name="tfrecall",
    version="0.1.0",
    description="Two-tower recall (candidate retrieval) for search and recommendation, TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tfrecall", "tfrecall.*", "pipelines", "pipelines.*"]),
    install_requires=[
        "tensorflow~=2.20.0",
        "tf-keras~=2.20.0",
        "scann~=1.4.2",
        "numpy",
        "absl-py",
        "matplotlib",  # the Recall@K plot of pipelines.evaluate
    ],
    extras_require={
        # No tfrecall module imports TFRS: its users bring it, and tfrecall works with their
        # models (docs/from_tfrs.md); the tests cross-check against it.
        "tfrs": ["tensorflow-recommenders==0.7.7"],
        "test": ["tensorflow-recommenders==0.7.7", "pytest>=8", "pytest-xdist>=3", "ruff>=0.6",
                 "hypothesis>=6"],
    },
)
