"""Subcommands of the `gaze-attention` CLI, one module each (see `gaze_attention.cli`)."""
