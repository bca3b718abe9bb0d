"""MLflow and servers: the model registry, serving, the shared tracking server, the UIs."""
