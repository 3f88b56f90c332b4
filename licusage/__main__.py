"""``python -m licusage``: the same command line as ``licusage``."""

from licusage.cli import main

if __name__ == "__main__":
    main(prog_name="licusage")
