"""Pipeline stages: one module per step, `tasks/<stage>.py` with `run_<stage>(params) -> metrics`,
and the stage table that declares them all (`tasks/stages.py`). Each stage reads its declared
inputs, calls the core (`tinynlp`), writes its declared outputs atomically and returns small
metrics. Both shells, the DVC command (`python -m tasks <stage>`) and the Prefect task
(`flows.pipeline`), run a stage through `tasks.stages.run_stage` and nothing else."""
