"""The `tinynlp` console command and its subcommands. Each returns an exit code from the one map in
`tinynlp.errors`; only the subcommands that run a flow (run, retrain, deploy) import Prefect."""
