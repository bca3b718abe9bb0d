"""Image classification (Fruits-360, Simpsons): input pipeline, models, training, evaluation, MLflow model."""
