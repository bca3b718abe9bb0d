"""Loaded by every Python process when this folder is on PYTHONPATH: with CVPIPE_KILL="EVENT:TEXT:N",
a ``python -m stages.*`` process sends itself SIGKILL just before the N-th audit event EVENT whose
first argument contains TEXT (``os.rename:data/validated:2``: as the second file under
data/validated is renamed into place). No cleanup runs, as when the machine loses power or the OOM
killer strikes. tests/test_pipeline.py kills every kind of stage this way."""

import os
import signal
import sys

_spec = os.environ.get("CVPIPE_KILL")
_argv = list(getattr(sys, "orig_argv", []))
if _spec and "-m" in _argv and _argv[_argv.index("-m") + 1].startswith("stages."):
    _event, _text, _n = _spec.rsplit(":", 2)
    _seen = [0]

    def _hook(event, args):
        if event != _event or not args:
            return
        first = args[0]
        if isinstance(first, (str, bytes, os.PathLike)) and _text in os.path.abspath(os.fsdecode(first)):
            _seen[0] += 1
            if _seen[0] == int(_n):
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(_hook)
