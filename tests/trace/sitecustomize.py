"""Loaded by every Python process when this folder is on PYTHONPATH and CVPIPE_TRACE names a folder:
records, for ``python -m stages.*`` commands, the files and folders the process reads, the project
modules it imports (tests/test_pipeline.py checks them against dvc.yaml's deps), and every network
address it connects to or looks up (nothing may be fetched at run time)."""

import atexit
import json
import os
import sys

_folder = os.environ.get("CVPIPE_TRACE")
_argv = list(getattr(sys, "orig_argv", []))
if _folder and "-m" in _argv and _argv[_argv.index("-m") + 1].startswith("stages."):
    _reads: set[str] = set()
    _network: set[str] = set()
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            reading = ("r" in mode and "+" not in mode) if isinstance(mode, str) else not (flags or 0) & _WRITE
            # A folder opened by descriptor reads no content (shutil.rmtree walks a temporary tree by
            # os.open(name, dir_fd=...): its relative names must not be taken as cwd's); listing is
            # recorded below.
            if reading and isinstance(path, (str, bytes, os.PathLike)) and not os.path.isdir(path):
                _reads.add(os.path.abspath(os.fsdecode(path)))
        elif event in ("os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            _reads.add(os.path.abspath(os.fsdecode(args[0])))
        elif event == "socket.connect":
            _network.add(f"connect {args[1]!r}")
        elif event == "socket.getaddrinfo":
            _network.add(f"getaddrinfo {args[0]!r}")

    sys.addaudithook(_hook)

    @atexit.register
    def _write():
        modules = sorted({os.path.abspath(f) for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))})
        with open(os.path.join(_folder, f"{os.getpid()}.json"), "w") as out:
            json.dump({"argv": _argv, "cwd": os.getcwd(), "reads": sorted(_reads), "modules": modules,
                       "network": sorted(_network)}, out)
