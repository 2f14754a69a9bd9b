"""A network trained on clean images only: the Modular method's frozen backbone, and ImgSpace's identity classifier."""

from __future__ import annotations

from comprobust.data.loaders import PairedViewLoader
from comprobust.methods.common import ClassifierTask, Export, StageContext


def train(ctx: StageContext) -> Export:
    ctx.seed_torch("init")
    network = ctx.new_network()
    batch_size = ctx.params["batch_size"]
    train_loader = PairedViewLoader(
        ctx.data,
        "train",
        views=("Identity",),
        batch_size=batch_size,
        seed=ctx.data_seed("train"),
        device=ctx.views_device,
    )
    valid_loader = PairedViewLoader(
        ctx.data,
        "valid",
        views=("Identity",),
        batch_size=batch_size,
        seed=ctx.data_seed("valid"),
        device=ctx.views_device,
    )
    task = ClassifierTask(
        network,
        lambda epoch: ((x[0], y) for x, y in ctx.prefetch(train_loader.batches(epoch))),
        lambda: ((x[0], y) for x, y in valid_loader.batches(0)),
        ctx.device,
    )
    result = ctx.fit(task)
    return ctx.export(
        "network", network.state_dict(), {"best_epoch": result.best_epoch, **result.best_metrics}
    )
