"""One module per `python -m bench` subcommand.

Each module defines:
  NAME: the subcommand as typed, the module's name with "-" for "_" (large_message.py: "large-message")
  HELP: one line for `python -m bench --help`
  add_arguments(parser): its flags
  run(args) -> int: the exit code (see streamstore.errors)
"""
