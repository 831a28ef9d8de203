"""``python -m headstart`` (and ``accelerate launch -m headstart``) runs the command line."""

from headstart.cli.app import main

if __name__ == "__main__":
    main()
