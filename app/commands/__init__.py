"""Subcommands of the `phononscreen` CLI, one module per group."""
