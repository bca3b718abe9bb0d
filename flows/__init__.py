"""Prefect flows: the stage ``run`` functions as tasks, adding only orchestration."""

from __future__ import annotations

import logging


class _NoTracebackWithoutException(logging.Filter):
    """Prefect logs a task that *returned* a Failed state with ``exc_info=True``; with no exception
    in flight the logging module prints a stray ``NoneType: None`` line under the error. Drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


logging.getLogger("prefect.task_runs").addFilter(_NoTracebackWithoutException())
