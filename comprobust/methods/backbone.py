"""A network trained on clean images only: the Modular method's frozen backbone, and ImgSpace's identity classifier."""

from __future__ import annotations

from comprobust.methods.common import ClassifierTask, Export, StageContext


def train(ctx: StageContext) -> Export:
    ctx.seed_torch("init")
    network = ctx.new_network()
    batch_size = ctx.params["batch_size"]
    task = ClassifierTask(network, *ctx.clean_batches(batch_size), ctx.device)
    result = ctx.fit(task)
    return ctx.export(
        "network", network.state_dict(), {"best_epoch": result.best_epoch, **result.best_metrics}
    )
