"""ERM ("CrossEntropy"): one network trained with cross-entropy on mixed batches of Identity + the elementals."""

from __future__ import annotations

from comprobust.data.loaders import MixedElementalLoader
from comprobust.methods.common import ClassifierTask, Export, StageContext


def train(ctx: StageContext) -> Export:
    ctx.seed_torch("init")
    network = ctx.new_network()
    batch_size = ctx.params["batch_size"]
    train_loader = MixedElementalLoader(ctx.data, "train", batch_size=batch_size, seed=ctx.data_seed("train"))
    valid_loader = MixedElementalLoader(ctx.data, "valid", batch_size=batch_size, seed=ctx.data_seed("valid"))
    task = ClassifierTask(
        network, lambda epoch: ctx.prefetch(train_loader.batches(epoch)), valid_loader.batches, ctx.device
    )
    result = ctx.fit(task)
    return ctx.export(
        "network", network.state_dict(), {"best_epoch": result.best_epoch, **result.best_metrics}
    )
