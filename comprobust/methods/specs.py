"""What each method declares, without importing torch: its hyper-parameters with defaults, the upstream stages it
reads (as typed references), and whether it runs once per elemental corruption.

Validating an experiment and planning its runs only needs these specs, so `launch.py run --dry-run` stays fast.
The training code of a method lives in `comprobust/methods/<name>.py` as `train(context)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from comprobust.registry import Registry

COMMON_PARAMS: Mapping[str, Any] = MappingProxyType(
    {
        "lr": None,
        "max_epochs": 200,
        "batch_size": 256,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "patience": None,
        "optimizer": "sgd",
        "warmup_epochs": 0,
        "bf16": False,
        "channels_last": False,
        "min_improvement": 0.0,
        "loader_workers": 0,
    }
)
"""Parameters of every training stage (the paper's defaults; `lr` has none and must be given).

`min_improvement` is the fraction by which an epoch's validation loss must undercut the best so far to become the
best (0: the paper's rule, a tie counts). `optimizer` ("sgd" | "adamw"), `warmup_epochs`, `bf16` (bf16 autocast of
the forward and backward passes), `channels_last` (the model and its convolutions in NHWC) and `min_improvement` came
later: a stage's resolved params hold them only when set to another value than these defaults
(`stage_config.UNLISTED_DEFAULTS`), so the runs of existing experiments keep their ids.

`loader_workers` (0: the training batches are prepared between steps; 1: by one background thread, the next batch
while the model trains on this one) changes how a run is executed, not what it computes (the same batches, bit for
bit): it is never among a stage's resolved params, so never in a run's identity (`stage_config.EXECUTION_PARAMS`)."""

PARAM_TYPES: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {
        "lr": (float,),
        "max_epochs": (int,),
        "batch_size": (int,),
        "momentum": (float,),
        "weight_decay": (float,),
        "patience": (int, type(None)),
        "optimizer": (str,),
        "warmup_epochs": (int,),
        "bf16": (bool,),
        "channels_last": (bool,),
        "min_improvement": (float,),
        "loader_workers": (int,),
        "weight": (float,),
        "temperature": (float,),
        "search_epochs": (int,),
        "levels": (list, type(None)),
        "search_val_batches": (int, type(None)),
        "mechanisms": (str, dict, type(None)),  # None: every cue (the dataset's natural condition)
        "conditions": (str, list),
        "loss": (str,),
        "alpha": (float, type(None)),
        "top_k": (int,),
        "kd_t2": (bool,),
        "kd_divergence": (str,),
        "contrast_temperature": (float,),
        "contrast_eps": (float,),
        "crd_pairs": (str,),
        "crd_heads": (str,),
        "crd_dim": (int,),
    }
)

CORRUPTION = "corruption"  # a kind of dataset: corruptions and their compositions
CUE = "cue"  # a kind of dataset: cues and conditions
CUE_PARAMS = ("mechanisms", "conditions")  # parameters that mean something on a cue dataset only
ARCHITECTURE_AXIS = "architecture"
"""Every stage may name its own network (`architecture: small`) or a list of them, one run each; without it a
stage trains the experiment's architecture."""


@dataclass(frozen=True)
class MethodSpec:
    """A training method as the planner sees it."""

    name: str
    summary: str
    params: Mapping[str, Any] = field(default_factory=dict)  # method-specific parameters and defaults
    refs: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=dict
    )  # role -> the method(s) it may name
    per_corruption: bool = False
    metrics: tuple[str, ...] = ("val_loss", "val_acc")  # what a finished run reports (done.json, W&B summary)
    axes: tuple[
        str, ...
    ] = ()  # parameters that may be a list: the stage runs once per value (and per product)
    each: tuple[str, ...] = ()  # refs read one upstream run per downstream run (else every run of the stage)
    datasets: tuple[str, ...] = (CORRUPTION,)  # the kinds of dataset it trains on: CORRUPTION and/or CUE

    def accepts(self, role: str) -> tuple[str, ...]:
        """The methods whose stages `role` may name."""
        wanted = self.refs[role]
        return (wanted,) if isinstance(wanted, str) else wanted

    @property
    def all_params(self) -> dict[str, Any]:
        return {**COMMON_PARAMS, **self.params}


METHODS: Registry[MethodSpec] = Registry("method")
"""Every training method a stage may name (its `train` is `comprobust.methods.trainer(name)`)."""
for _spec in (
    MethodSpec("erm", "ERM ('CrossEntropy'): one network on Identity + the six elementals, mixed batches"),
    MethodSpec(
        "contrastive",
        "one network, cross-entropy + multi-view NT-Xent on the penultimate layer",
        params={"weight": 0.1, "temperature": 0.15},
        metrics=("val_loss", "val_acc", "val_ce", "val_ctv"),
    ),
    MethodSpec("backbone", "one network trained on clean (Identity) images only"),
    MethodSpec(
        "modules",
        "per elemental: level search, then one module at the chosen depth of a frozen backbone",
        params={
            "weight": 1.0,
            "temperature": 0.15,
            "search_epochs": 5,
            "levels": None,
            "search_val_batches": None,
        },
        refs={"backbone": "backbone"},
        per_corruption=True,
        metrics=("val_loss", "val_acc", "val_ce", "val_ctv"),
    ),
    MethodSpec(
        "autoencoders",
        "per elemental: an auto-encoder trained to undo it (MSE to the clean image)",
        per_corruption=True,
        metrics=("val_loss",),
    ),
    MethodSpec(
        "imgspace",
        "a classifier trained on auto-encoded elementals and clean images (joint)",
        refs={"autoencoders": "autoencoders"},
    ),
    MethodSpec(
        "supervised",
        "cue datasets: one network trained with cross-entropy on the condition `mechanisms` (a teacher, or the "
        "from-scratch baseline of a student)",
        params={"mechanisms": None, "conditions": "exhaustive"},
        axes=("mechanisms",),
        datasets=(CUE,),
    ),
    MethodSpec(
        "distill",
        "a fresh student distilled from one frozen teacher run with loss kd, jacobian or contrastive: on a cue "
        "dataset over the transfer set `mechanisms`, on a corruption dataset over clean (Identity) images",
        params={
            "mechanisms": None,
            "conditions": "exhaustive",
            "loss": "kd",
            "temperature": 30.0,
            "alpha": None,
            "top_k": 20,
            "kd_t2": False,
            "kd_divergence": "kl",
            "contrast_temperature": 0.1,
            "contrast_eps": 0.97,
            "crd_pairs": "class",
            "crd_heads": "trained",
            "crd_dim": 128,
        },
        refs={"teacher": ("supervised", "erm", "contrastive", "backbone", "imgspace")},
        axes=("mechanisms", "loss"),
        each=("teacher",),
        datasets=(CUE, CORRUPTION),
        metrics=("val_loss", "val_acc", "val_ts_agree", "val_ts_kl"),
    ),
):
    METHODS.add(_spec.name, _spec)

CLASSIFIER_METHODS = frozenset({"erm", "contrastive", "backbone", "imgspace", "distill"})

SYSTEM_ROLES: Mapping[str, Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "monolithic": {"classifier": CLASSIFIER_METHODS},
        "modular": {"backbone": frozenset({"backbone"}), "modules": frozenset({"modules"})},
        "imgspace": {"autoencoders": frozenset({"autoencoders"}), "classifier": CLASSIFIER_METHODS},
    }
)
"""Kinds of evaluated system: the roles each fills with a stage, and the methods a role accepts."""

SYSTEM_MODEL_ROLE: Mapping[str, str] = MappingProxyType(
    {"monolithic": "classifier", "modular": "backbone", "imgspace": "classifier"}
)
"""The role of each kind of system that holds one model: a system is evaluated once per run of that role's stage
(`ERM[architecture=vit-cpu]`); its other roles read the runs of their stage on the same architecture."""
