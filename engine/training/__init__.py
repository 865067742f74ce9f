"""Training pipeline of the built-in default and draft models (see train.cli_main)."""
