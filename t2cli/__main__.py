"""`python -m t2cli`: the `t2` command, for launchers that start a module (`accelerate launch -m t2cli`)."""

from t2cli.cli.app import main

main()
