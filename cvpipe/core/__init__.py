"""Framework: errors, atomic I/O, command lines, params.yaml, plots and the dvc.yaml map."""
