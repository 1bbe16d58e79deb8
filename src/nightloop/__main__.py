"""``python -m nightloop``: the same command line as ``nightloop``."""

from nightloop.cli import main

if __name__ == "__main__":
    main()
