"""cvpipe: the library behind the computer-vision MLOps pipeline (stages/ and flows/ call it)."""

import ctypes
import sys
from pathlib import Path

__version__ = "0.1.0"

# MKL's code path on every x86-64 processor (cvpipe/core/mkl_intel_cpu.c), loaded before anything imports torch: MKL
# asks whether the CPU is Intel's once, when torch loads, so later is too late (cvpipe.core.cpu warns then).
MKL_INTEL_CPU = Path(sys.prefix) / "lib" / "cvpipe" / "libmkl_intel_cpu.so"
MKL_INTEL_CPU_LOADED = "torch" not in sys.modules and MKL_INTEL_CPU.is_file()
if MKL_INTEL_CPU_LOADED:
    ctypes.CDLL(str(MKL_INTEL_CPU), mode=ctypes.RTLD_GLOBAL)
