"""PaDIR: parallel decoding by iterative refinement for T5-style encoder-decoders.

Exact pins: this set installs together on Python 3.11 (CPU); the code also runs on Python 3.12
(benchmarks/device_check.py's GPU machine; tests/test_device_check.py). sentencepiece is 0.2.1, not 0.2.3:
0.2.3 ships protobuf-7 generated code, and xmanager and TensorFlow need protobuf 6. `requirements.lock` is the
fully resolved set (`uv pip compile ... --find-links /opt/wheels`: the CPU build of torch, a test
dependency, is a local-version wheel found there), which `.ci/run` and the README install from.
"""
import setuptools

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "gin-config==0.5.0",
    "sacrebleu==2.6.0",
    "sentencepiece==0.2.1",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "protobuf==6.33.6",
    "numpy==2.4.6",
    "tensorboardX==2.6.5",
    "matplotlib==3.11.2",
    "tqdm==4.70.1",
    "absl-py==2.5.1",
    "safetensors==0.8.0",  # `padir convert` reads Hugging Face checkpoints
]

EXTRAS_REQUIRE = {
    # torch and transformers: the pretrained-T5 import is checked against Hugging Face's PyTorch
    # T5 (tests/test_t5_import.py); nothing else imports them. Any build of torch 2.13.0 will do
    # (requirements.lock pins the CPU one, `2.13.0+cpu`, from PyTorch's CPU index).
    "test": ["pytest==9.2.0", "torch==2.13.0", "transformers==5.24.0"],
    # The CUDA build of the pinned jax (its plugin and NVIDIA's libraries, CUDA 13; `cuda12` for
    # older drivers) and the TPU runtime: `pip install -e '.[cuda]'` (docs/accelerators.md).
    "cuda": ["jax[cuda13]==0.10.2"],
    "cuda12": ["jax[cuda12]==0.10.2"],
    "tpu": ["jax[tpu]==0.10.2"],
    # google-cloud-bigquery pinned: uv ignores Requires-Python upper bounds and would pick
    # 2.28.1 (Python <3.10 only), which pip then refuses.
    "xm": ["xmanager==0.8.5.post1", "google-cloud-bigquery==3.47.0"],
}

setuptools.setup(
    name="padir",
    version="0.1.0",
    description="Non-autoregressive MT by parallel iterative refinement (JAX/Flax, T5X-style).",
    packages=setuptools.find_packages(include=["padir", "padir.*", "tasks", "tasks.*", "launch", "launch.*"]),
    package_data={"": ["*.gin"]},
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["padir=padir.cli:main"]},
)
