"""W&B sweeps for comprobust stages: validation, the offline controller and agent, and the thin online path.

Modules: `validate` (a sweep file, checked), `command` (its run-stage target; macro expansion), `engine` (the
`sweeps` package, seeded), `folder` (the offline sweep folder), `store` (its locked journal), `controller`,
`agent`, `status`, `online`, and `trial` (what run-stage does when an agent started it).

A sweep is a YAML file in W&B's own format (usable with plain `wandb sweep` too) whose `command` calls
`launch.py run-stage <experiment> --stage <stage> ${args}`. `load_sweep` checks it before anything runs: the
`sweeps` engine's JSON schema, a trial suggestion, the command, the metric, and every parameter (name and values)
against the stage's method. Errors are one `UserError` naming the file and the key.

Offline (no W&B credentials), the sweep lives in `<experiment output>/sweeps/<sweep_id>/`:

    sweep.yaml         the sweep config exactly as given (W&B format)
    sweep-meta.json    sweep id, source file, working directory, the run-stage target, output folder, project
    journal.jsonl      run records (comprobust.sweeps.store: append-only journal, lock file, heartbeats/)
    wandb/sweep-<id>/config-<run_id>.yaml   each run's parameters as {name: {value: v}} (WANDB_SWEEP_PARAM_PATH)
    logs/<run_id>.log  the run's output
    submitit/          the agents' job files

`SweepController.next_run` (under the store's lock) first hands out runs whose agent crashed (a dead pid on this
host or a stale heartbeat), then asks the `sweeps` engine (`sweeps.next_run` on the records so far; grid returns
None when exhausted; `run_cap` is honoured; `random` and `numpy` are seeded from the sweep id and the number of
runs, so suggestions are reproducible). `run_agent` loops: take a run, write its parameter file, set
WANDB_SWEEP_ID / WANDB_RUN_ID / WANDB_SWEEP_PARAM_PATH / WANDB_PROJECT, run the command expanded exactly as
`wandb agent` does (wandb's own `create_sweep_command` / `create_sweep_command_args`), heartbeat while it runs,
apply hyperband (`sweeps.stop_runs`) when `early_terminate` is set, then record the result.

Where a run's result comes from: for a run-stage command, the `done.json` of the stage run(s) it planned (the
same plan run-stage makes from the same parameters; written atomically, and only on success) — the mean over
per-corruption runs, with each corruption's value as `<metric>/<corruption>`. Otherwise, and for the metric's
history (hyperband), the offline W&B run with id WANDB_RUN_ID (`comprobust.wandb_offline`). The local sweep
id reaches runs as COMPROBUST_SWEEP_ID, not WANDB_SWEEP_ID (see `comprobust.sweeps.trial`); `launch.py publish`
syncs the runs and creates the sweep on the server with them as its prior runs.

Online (credentials configured), `online_sweep` calls `wandb.sweep` once per sweep file (a relaunch continues
the same sweep) and the agents run `wandb agent --count K <entity>/<project>/<sweep_id>`.
"""
