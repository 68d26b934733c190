"""The divergence watch: says, while a run goes on, when its training loss climbs far above chance."""

from __future__ import annotations

import math

from gaze_attention.engine.config import TrainConfig


class DivergenceWatch:
    """A classifier that has learned nothing sits at ln(C); a window mean well above that
    (after warm-up) means the weights are being pushed into confident wrong answers: almost
    always a learning rate too high for the initialisation. Warns once per climb.
    """

    def __init__(self, num_classes: int, cfg: TrainConfig, margin: float = 1.0) -> None:
        self.chance = math.log(max(num_classes, 2))
        self.limit = self.chance + margin
        self.cfg = cfg
        self.raised = False

    def check(self, row: dict[str, float]) -> str | None:
        it, ce = int(row["iteration"]), float(row["ce"])
        if it <= self.cfg.optim.warmup or not math.isfinite(ce):
            return None
        if ce <= self.chance:
            self.raised = False
            return None
        if self.raised or ce <= self.limit:
            return None
        self.raised = True
        o = self.cfg.optim
        return (
            f"warning: training cross-entropy {ce:.2f} at iteration {it} is far above ln({math.exp(self.chance):.0f})"
            f" = {self.chance:.2f}, the loss of a model that predicts nothing: the run is diverging. "
            f"Likely cause: learning rate {row['lr']:.3g} too high for this initialisation "
            f"(from scratch, lower optim.lr, e.g. lr={o.lr / 4:.3g}, or lengthen optim.warmup, now {o.warmup})."
        )
