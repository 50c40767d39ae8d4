"""The `memory-runtime` command."""
