"""The subcommands of `chorus`, one module per group; only `up`, `down`, `status` load the embedded stack."""
