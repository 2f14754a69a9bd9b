"""ImgSpace step 2, the joint classifier: a fresh network trained with cross-entropy on 7 paired views, each
corrupted view first passed through its (frozen) auto-encoder, the Identity view as is."""

from __future__ import annotations

import torch

from comprobust.corruptions import ELEMENTALS
from comprobust.errors import UserError
from comprobust.methods.common import ClassifierTask, Export, StageContext

VIEWS = (*ELEMENTALS, "Identity")


def autoencoders_by_corruption(exports: list[Export], device: torch.device) -> dict[str, torch.nn.Module]:
    """The auto-encoder of each elemental, keyed by the corruption it undoes."""
    found = {export.meta["corruption"]: export.build(device) for export in exports}
    missing = [c for c in ELEMENTALS if c not in found]
    if missing:
        raise UserError(
            f"auto-encoders missing for {', '.join(missing)}: train those autoencoders runs first"
        )
    return found


def train(ctx: StageContext) -> Export:
    autoencoders = autoencoders_by_corruption(ctx.inputs["autoencoders"], ctx.device)
    ctx.seed_torch("init")
    network = ctx.new_network()
    per_view = max(1, ctx.params["batch_size"] // len(VIEWS))
    train_loader, valid_loader = (ctx.paired_views(split, VIEWS, per_view) for split in ("train", "valid"))

    def reconstructed(batches):
        for x, y in batches:
            with torch.no_grad():
                views = [
                    autoencoders[v](x[i].to(ctx.device)) if v != "Identity" else x[i].to(ctx.device)
                    for i, v in enumerate(VIEWS)
                ]
            yield torch.cat(views), y.repeat(len(VIEWS))

    task = ClassifierTask(
        network,
        lambda epoch: reconstructed(ctx.prefetch(train_loader.batches(epoch))),
        lambda: reconstructed(valid_loader.batches(0)),
        ctx.device,
    )
    result = ctx.fit(task)
    return ctx.export(
        "network", network.state_dict(), {"best_epoch": result.best_epoch, **result.best_metrics}
    )
