"""Model-from-code entry for MLflow (``python_model=<this file>``): no pickled Python objects in the model."""

import mlflow.models

from cvpipe.segmentation.pyfunc import Segmenter

mlflow.models.set_model(Segmenter())
