"""The data gate: Great Expectations suites over a dataset's manifest, boxes, masks and classes.

Each check has an id (``images.decode``); ``params.yaml`` decides which only warn. Per-image facts
that need pixels (full decodes, run-length encodings) are computed first and become columns, so
every check is a plain Great Expectations expectation over a table.
"""

from cvpipe.gate.checks import checks, example, run_checks
from cvpipe.gate.config import Check, CheckResult, Frames, GateConfig
from cvpipe.gate.frames import build_frames, name_problem
from cvpipe.gate.quarantining import Quarantine, quarantine

__all__ = ["Check", "CheckResult", "Frames", "GateConfig", "Quarantine", "build_frames", "checks", "example",
           "name_problem", "quarantine", "run_checks"]
