"""The same CPU results on every x86-64 machine with AVX2: each numerical library pinned to one code path.

PyTorch, its BLAS and the image libraries choose their CPU code when they first compute, by what the
processor offers: ATen's vectorised kernels by the widest instruction set (DEFAULT, AVX2, AVX512),
oneDNN's convolutions by its own ISA dispatch, MKL's BLAS by a code path per processor (Intel or AMD,
AVX2 or AVX-512), OpenCV (ultralytics' augmentation: resizing, warps, colour) by its SIMD dispatch.
Each path rounds or adds in another order, so one training gives other weights on another CPU
(measured here: a few Adam steps of a small CNN gave six different results under six settings, and
two epochs of YOLO other weights with OpenCV's AVX paths turned off; numpy's own dispatch changed no
result, and the narrowed test turns it down too).

:data:`PIN` asks each library, through its documented control, for one path that every x86-64
processor with AVX2 has (Intel since Haswell, 2013; AMD since Excavator, 2015, and every Zen), so a
machine with more instructions, or with AVX-512 or not, computes the same bytes
(tests/cvpipe/core/test_cpu.py trains under the pin with the machine narrowed further and compares).
AVX2 rather than each library's plain baseline because that made a LittleVGG step about 3x slower
here (oneDNN at SSE4.1 alone 2.5x, MKL's COMPATIBLE path 1.5x); at AVX2 the pin costs about 5%
(bench/train.py). A CPU without AVX2 (pre-2013 Intel, pre-2015 AMD) is warned that its bytes differ.

``MKL_CBWR=AVX2`` holds on Intel processors only: on any other MKL runs its own code for BLAS and vector maths
(torch's matrix products, exp, log, sqrt), so an AMD machine trained other weights than an Intel one under the same
pin (measured here under QEMU's AMD EPYC model: the same AVX2 kernels everywhere else, other bytes from MKL alone).
MKL asks one function, ``mkl_serv_intel_cpu_true``, whether the processor is Intel's; ``make setup`` builds a
definition that answers yes (cvpipe/core/mkl_intel_cpu.c) and ``import cvpipe`` loads it before torch, so MKL takes
its Intel AVX2 branch on every x86-64 processor (tests/cvpipe/core/test_cpu.py runs a training step under QEMU's
AMD model and compares). Without it, or with torch imported before cvpipe, a non-Intel CPU is warned.

The controls are read when a library first computes (OpenCV: when imported), so :func:`pin_kernels`
runs at the entry points (the train, evaluate and register stages, which every runner calls, and the
test suite's conftest) before any tensor work. ``train.cpu_pin: false`` in params.yaml leaves the
machine's fastest kernels and its own bytes. GPU results depend on the GPU model and are not covered:
a CUDA run is deterministic per GPU model only.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import cvpipe
from cvpipe.core.errors import CvpipeError
from cvpipe.core.params import flag, mapping

log = logging.getLogger(__name__)

PIN: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's AVX2 kernels, never its AVX-512 ones
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions): its AVX2 kernels
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: its AVX2 path (on AMD: with mkl_intel_cpu.c)
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX",  # OpenCV (ultralytics' augmentation) without its AVX-512 paths
}


def pinned(params: dict[str, Any]) -> bool:
    """``train.cpu_pin`` (default true): compute on the CPU through :data:`PIN`'s code paths."""
    return flag(mapping(params.get("train"), "train").get("cpu_pin", True), "train.cpu_pin")


def pin_kernels(enabled: bool = True, environ: dict[str, str] | None = None) -> None:
    """Set (or, ``enabled=False``, clear) :data:`PIN` in ``environ`` (default: this process's, for it and the
    processes it starts; then checked: refused when a library already chose other code here)."""
    env = os.environ if environ is None else environ
    for name, value in PIN.items():
        if enabled:
            env[name] = value
        elif env.get(name) == value:
            del env[name]
    if environ is None and enabled and platform.machine().lower() in ("x86_64", "amd64"):
        _check_taken()


def _check_taken() -> None:
    """The pin took effect in this process: OpenCV without AVX-512 (it reads its control when imported) and
    torch on its AVX2 kernels (or its plain ones, on a CPU without AVX2)."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and cv2.checkHardwareSupport(13):  # CV_CPU_AVX_512F: imported before the pin, unpinned
        raise CvpipeError("OpenCV was imported before train.cpu_pin could take effect; pin before importing it "
                          "(cvpipe.core.cpu.pin_kernels)")
    import torch

    chosen = torch.backends.cpu.get_cpu_capability()  # fixed at torch's first CPU kernel, read now otherwise
    if chosen == "DEFAULT":
        log.warning("this CPU has no AVX2: torch runs its plain kernels, and CPU-trained bytes differ from those of "
                    "machines with AVX2 (dvc.lock's)")
    elif chosen != "AVX2":
        raise CvpipeError(f"torch already computed with its {chosen} kernels in this process, so train.cpu_pin "
                          "cannot take effect; pin before any tensor work (cvpipe.core.cpu.pin_kernels)")
    vendor = cpu_vendor()
    if vendor not in ("GenuineIntel", None) and not cvpipe.MKL_INTEL_CPU_LOADED:
        why = ("torch was imported before cvpipe" if cvpipe.MKL_INTEL_CPU.is_file()
               else f"{cvpipe.MKL_INTEL_CPU} is missing: run make setup, which needs a C compiler")
        log.warning("this %s CPU runs MKL's non-Intel code paths (%s): CPU-trained bytes differ from dvc.lock's",
                    vendor, why)


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The processor's vendor as CPUID names it (``GenuineIntel``, ``AuthenticAMD``), None where Linux does not say."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return None
