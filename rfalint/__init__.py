"""rfalint: find the layers a CNN cannot use at its input resolution, before training.

The API below is imported on first use (:mod:`rfalint.lazy`), so ``import rfalint`` alone
does not import torch.
"""

from rfalint.lazy import exports

__version__ = "0.1.0"

_API = {"CheckResult": "rfalint.api", "analyze": "rfalint.api", "check": "rfalint.api",
        "rf_region": "rfalint.api", "load_model": "rfalint.load",
        "register_module": "rfalint.ops", "ops": "rfalint.ops"}
__all__ = ["__version__", *_API]
__getattr__, __dir__ = exports(__name__, _API)
