"""What MKL computes for torch under the pin: ``python -m tests.cvpipe.core.mkl_probe [--torch-first]`` prints, as
JSON, digests of a matrix product and of exp, log and sqrt (MKL's BLAS and vector maths) and of two Adam steps of a
small CNN. ``--torch-first`` imports torch before cvpipe, so MKL decides its code path without cvpipe's answer.
Run by tests/cvpipe/core/test_cpu.py natively and under QEMU's AMD processor model."""

from __future__ import annotations

import hashlib
import json
import sys


def main(argv: list[str]) -> None:
    if "--torch-first" in argv:
        import torch
    import cvpipe
    from cvpipe.core.cpu import pin_kernels

    pin_kernels()
    import torch

    def digest(*tensors: torch.Tensor) -> str:
        return hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in tensors)).hexdigest()[:16]

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 300, generator=g), torch.randn(300, 70, generator=g)
    x = torch.rand(4096, generator=g) + 0.5
    images, labels = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 5, (8,), generator=g)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5))
    adam = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(2):
        adam.zero_grad()
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        adam.step()
    print(json.dumps({"shim": cvpipe.MKL_INTEL_CPU_LOADED, "matmul": digest(a @ b), "exp": digest(x.exp()),
                      "log": digest(x.log()), "sqrt": digest(x.sqrt()), "adam": digest(*net.parameters())}))


if __name__ == "__main__":
    main(sys.argv[1:])
