"""Stage 2 of the pipeline: run a model once and record its graph."""

from rfalint.capture.tracer import capture

__all__ = ["capture"]
