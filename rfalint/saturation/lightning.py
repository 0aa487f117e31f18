"""A PyTorch Lightning callback that logs saturation each training epoch
(docs/method.md §7). Importing this module needs ``lightning`` (or the older
``pytorch_lightning``); rfalint itself does not depend on it.

    trainer = lightning.Trainer(callbacks=[SaturationCallback()])
"""

from __future__ import annotations

from typing import Sequence

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("rfalint.saturation.lightning needs PyTorch Lightning: "
                          "pip install lightning") from None

from rfalint.saturation.monitor import Monitor, MonitorReport


class SaturationCallback(Callback):
    """Records the training forward passes of each epoch (validation passes are not
    recorded) and logs every layer's saturation, s_mu and the tail length through
    ``pl_module.log_dict`` at the epoch's end, summed over the DDP processes."""

    def __init__(self, layers: str | Sequence[str] = "all", every: int = 1,
                 input_shape: tuple[int, ...] | None = None, delta: float = 0.99,
                 prefix: str = "saturation/"):
        super().__init__()
        self.options = dict(layers=layers, every=every, input_shape=input_shape, delta=delta)
        self.prefix = prefix
        self.monitor: Monitor | None = None
        self.last: MonitorReport | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.monitor is None:
            self.monitor = Monitor(pl_module, **self.options)
        self.monitor.detach()  # a fresh window, on the device the module is on now
        self.monitor.attach()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.monitor.pause()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.monitor.resume()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor is None or self.monitor.recorder is None:
            return
        self.last = self.monitor.report(all_ranks=True)
        self.monitor.detach()
        pl_module.log_dict(self.last.metrics(self.prefix))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.monitor is not None:
            self.monitor.detach()
