"""rfalint: find the layers a CNN cannot use at its input resolution, before training."""

__version__ = "0.1.0"

from rfalint.api import CheckResult, analyze, check, rf_region  # noqa: E402
from rfalint.load import load_model  # noqa: E402

__all__ = ["CheckResult", "__version__", "analyze", "check", "load_model", "rf_region"]
