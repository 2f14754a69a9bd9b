"""`launch.py run-stage EXPERIMENT.yaml --stage NAME [--seed S] [--corruption C] [--select AXIS=V ...] [--set k=v ...]
[--k=v ...]`:
run one stage in this process. Slurm jobs and W&B sweep agents call this; extra `--key=value` arguments (the form
a sweep agent passes) are parameter overrides like `--set`."""

from __future__ import annotations

import argparse

from comprobust.stage_arguments import add_stage_arguments, parse_selection


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run-stage", help="run one stage of an experiment in this process")
    add_stage_arguments(parser)
    parser.set_defaults(handler=run_stage, accepts_extra=True)


def run_stage(args: argparse.Namespace) -> int:
    from comprobust.data.registry import check_dataset_files
    from comprobust.planning import resolve_stage
    from comprobust.stages import execute
    from comprobust.sweeps.trial import current_trial, run_trial
    from comprobust.validation import check_output_folder, parse_overrides

    overrides = {**parse_overrides(args.overrides), **parse_overrides(args.extra, where="argument")}
    experiment, runs = resolve_stage(
        args.experiment,
        args.stage,
        smoke=args.smoke,
        seed=args.seed,
        corruption=args.corruption,
        select=parse_selection(args.select),
        overrides=overrides,
    )
    check_output_folder(experiment.output_dir, f"{experiment.path}: output_root")
    check_dataset_files(experiment.dataset, f"{experiment.path}: dataset")
    if args.force:
        from comprobust.run_state import set_aside

        for run in runs:
            set_aside(experiment, run)
    trial = current_trial()
    if trial is not None:  # started by a sweep agent: see comprobust.sweeps.trial
        records = run_trial(experiment, runs, trial, args.mode)
    else:
        records = [execute(experiment, run, mode=args.mode) for run in runs]
    for run, record in zip(runs, records):
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in record.metrics.items() if k.startswith("val_"))
        print(f"{run.run_id}: done  {metrics}")
    return 0
