"""cvpipe: the library behind the computer-vision MLOps pipeline (stages/ and flows/ call it)."""

__version__ = "0.1.0"
