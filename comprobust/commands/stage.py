"""`launch.py run-stage EXPERIMENT.yaml --stage NAME [--seed S] [--corruption C] [--set k=v ...] [--k=v ...]`:
run one stage in this process. Slurm jobs and W&B sweep agents call this; extra `--key=value` arguments (the form
a sweep agent passes) are parameter overrides like `--set`."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run-stage", help="run one stage of an experiment in this process")
    parser.add_argument("experiment", help="experiment YAML, e.g. experiments/demo.yaml")
    parser.add_argument("--stage", required=True, help="stage name from the experiment's stages")
    parser.add_argument("--seed", type=int, help="one of the experiment's seeds (default: the first)")
    parser.add_argument("--corruption", help="for per-corruption stages: run only this elemental")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a stage parameter, e.g. --set lr=0.05 (repeatable)")
    parser.add_argument("--mode", choices=("auto", "online", "offline", "disabled"), help="W&B mode override")
    parser.add_argument("--smoke", action="store_true", help="the experiment at its smoke budget")
    parser.add_argument("--force", action="store_true",
                        help="run again even if done (its done.json and model.pt are set aside, not deleted)")
    parser.set_defaults(handler=run_stage, accepts_extra=True)


def run_stage(args: argparse.Namespace) -> int:
    from comprobust.config import load_experiment
    from comprobust.planning import plan, select_corruption
    from comprobust.stages import execute
    from comprobust.sweep_trial import current_trial, run_trial
    from comprobust.data.sources import check_dataset_files
    from comprobust.validation import check_output_folder, parse_overrides

    experiment = load_experiment(args.experiment, smoke_budget=args.smoke)
    check_output_folder(experiment.output_dir, f"{experiment.path}: output_root")
    check_dataset_files(experiment.dataset, f"{experiment.path}: dataset")
    overrides = {**parse_overrides(args.overrides), **parse_overrides(args.extra, where="argument")}
    if overrides:
        experiment = experiment.with_stage_params(args.stage, overrides)
    seed = args.seed if args.seed is not None else experiment.seeds[0]
    runs = plan(experiment, stages=[args.stage], seeds=[seed])
    if args.corruption:
        runs = select_corruption(runs, args.corruption)
    if args.force:
        from comprobust.pipeline import set_aside

        for run in runs:
            set_aside(experiment, run)
    trial = current_trial()
    if trial is not None:  # started by a sweep agent: see comprobust.sweep_trial
        records = run_trial(experiment, runs, trial, args.mode)
    else:
        records = [execute(experiment, run, mode=args.mode) for run in runs]
    for run, record in zip(runs, records):
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in record.get("metrics", {}).items() if k.startswith("val_"))
        print(f"{run.run_id}: done  {metrics}")
    return 0
