"""Developer tools run as `python -m padir.tools.NAME` (not `padir` subcommands)."""
