"""CLI subcommands: each module has add_arguments(parser) and run(args); names and help
are in cli.COMMANDS (a module is imported only when its command runs)."""
