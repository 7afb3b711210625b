"""One module per ``camix`` command: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""
