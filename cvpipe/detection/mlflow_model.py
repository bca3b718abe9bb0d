"""Model-from-code entry for MLflow (``python_model=<this file>``): no pickled Python objects in the model."""

import mlflow.models

from cvpipe.detection.pyfunc import Detector

mlflow.models.set_model(Detector())
