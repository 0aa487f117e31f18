"""Stage 2 of the pipeline: run a model once and record its graph."""

from rfalint.capture.tracer import Captures, capture

__all__ = ["Captures", "capture"]
