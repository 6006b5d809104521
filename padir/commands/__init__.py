"""The `padir` subcommands, one module each (see `padir.cli`): flags -> a library call."""
