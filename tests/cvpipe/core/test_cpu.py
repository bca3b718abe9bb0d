"""cvpipe.core.cpu: CPU training gives the same bytes when the machine has fewer (or more) instructions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

import cvpipe
from cvpipe.core.cpu import PIN, cpu_vendor, pin_kernels, pinned
from cvpipe.core.errors import CvpipeError, ParamsError
from tests.conftest import REPO

# an AVX2 machine without AVX-512, as each library sees it: MKL's instructions capped at AVX2 (the pin
# sets its path, not what the processor offers), numpy's at x86-64-v3, ATen, oneDNN and OpenCV at AVX2
NARROWER = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "NPY_DISABLE_CPU_FEATURES": "X86_V4", "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX"}


def probe(*args: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in PIN}  # this process is pinned (conftest)
    proc = subprocess.run([sys.executable, "-m", "tests.cvpipe.core.cpu_probe", *args], cwd=REPO, env=base | env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_pin_sets_each_control_and_off_clears_only_its_own_values():
    env = {"MKL_CBWR": "AVX2", "OTHER": "1"}
    pin_kernels(True, env)
    assert env == PIN | {"OTHER": "1"}
    pin_kernels(False, env)
    assert env == {"OTHER": "1"}
    mine = {"ATEN_CPU_CAPABILITY": "default"}  # a user's own choice is not the pin's to remove
    pin_kernels(False, mine)
    assert mine == {"ATEN_CPU_CAPABILITY": "default"}


def test_cpu_pin_is_on_unless_params_turn_it_off():
    assert pinned({"train": {}}) is True
    assert pinned({"train": {"cpu_pin": False}}) is False
    with pytest.raises(ParamsError, match=r"train\.cpu_pin"):
        pinned({"train": {"cpu_pin": "fast"}})


def test_the_pin_is_refused_once_torch_computed_with_other_kernels():
    base = {k: v for k, v in os.environ.items() if k not in PIN}
    code = ("import torch; torch.ones(4).sum()\nfrom cvpipe.core.cpu import pin_kernels\n"
            "try:\n    pin_kernels()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=base, capture_output=True, text=True, timeout=120, check=True)
    if not out.stdout:
        pytest.skip("this CPU's widest torch kernels are the pin's own: nothing to refuse")
    assert out.stdout.startswith(CvpipeError.__name__) and "train.cpu_pin cannot take effect" in out.stdout, out.stdout


def test_pinning_again_after_opencv_was_imported_under_the_pin_is_fine():
    """Stages called one after another in one process (the tests, a notebook) pin each time; OpenCV imported
    under the pin is the pin's OpenCV."""
    import cv2

    pin_kernels()
    assert not cv2.checkHardwareSupport(13)  # AVX-512F off, as OPENCV_CPU_DISABLE asked


@pytest.mark.slow
def test_training_under_the_pin_gives_the_same_bytes_on_a_machine_with_fewer_instructions():
    pinned_run = probe()
    narrowed = probe(**NARROWER)
    assert pinned_run["capability"] == narrowed["capability"] == "AVX2"
    assert narrowed == pinned_run  # the classifier's and the U-Net's weights, bit for bit
    free = probe("--no-pin")
    if free["capability"] == "AVX512":  # this machine has wider kernels: without the pin they give other bytes
        assert free["classifier"] != pinned_run["classifier"]


@pytest.mark.slow
def test_a_detector_trained_under_the_pin_is_the_same_on_a_machine_with_fewer_instructions():
    """ultralytics' augmentation runs on OpenCV, whose SIMD paths changed YOLO's weights until the pin covered them."""
    assert probe("--detection", **NARROWER) == probe("--detection")


def test_setup_built_the_answer_mkl_asks_and_cvpipe_loaded_it_before_torch():
    assert cvpipe.MKL_INTEL_CPU.is_file(), "make setup builds it (cvpipe/core/mkl_intel_cpu.c)"
    assert cvpipe.MKL_INTEL_CPU_LOADED  # conftest imports cvpipe before anything imports torch


def test_the_cpu_vendor_is_read_from_proc_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert cpu_vendor(tmp_path / "cpuinfo") == "AuthenticAMD"
    assert cpu_vendor(tmp_path / "absent") is None


def mkl_probe(*args: str, emulate: str | None = None) -> dict:
    """The MKL probe's digests, natively or under QEMU's model ``emulate`` of another processor."""
    qemu = [QEMU, "-cpu", emulate] if emulate else []
    proc = subprocess.run([*qemu, sys.executable, "-m", "tests.cvpipe.core.mkl_probe", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64" or QEMU is None, reason="needs x86-64 and qemu-x86_64 (make qemu)")
def test_an_amd_processor_computes_the_bytes_of_an_intel_one_under_the_pin():
    """QEMU's user-mode emulator runs this Python with the CPUID of an AMD EPYC (AVX2, no AVX-512, its own caches):
    MKL's BLAS and vector maths and two Adam steps give this machine's bytes; with torch imported before cvpipe,
    MKL never hears cvpipe's answer and takes its AMD paths, other bytes (what the answer is for)."""
    native = mkl_probe()
    amd = mkl_probe(emulate="EPYC-v3")
    assert native["shim"] and amd["shim"]
    assert amd == native
    unanswered = mkl_probe("--torch-first", emulate="EPYC-v3")
    assert not unanswered["shim"]
    assert unanswered["matmul"] != native["matmul"] and unanswered["adam"] != native["adam"]
