"""Core ML logic of the pipeline: readers, validation, models, training, metrics.

Nothing in this package imports Prefect or DVC, and nothing reads params.yaml except `config`.
"""
