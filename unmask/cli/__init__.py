"""`unmask` command line: argv -> calls into the library; one error/override helper."""

from unmask.cli.main import main

__all__ = ["main"]
