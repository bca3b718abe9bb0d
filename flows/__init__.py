"""Prefect flows: the stage ``run`` functions as tasks, adding only orchestration."""
