"""Prefect shells around the stage functions. Importing this package points Prefect at a
project-local home (its SQLite database lives in .prefect/) with analytics off, unless the
user has set their own, and routes the project's loggers into Prefect's run logs."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tinynlp,tasks,flows")
# Our lines logged outside a flow run (deploy registering, CLI commands) have no run to go to:
# they still print in the terminal; Prefect would otherwise warn once per logger about the API copy
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
