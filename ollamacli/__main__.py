"""Entry point for `python -m ollamacli`."""

from ollamacli.cli import main

if __name__ == "__main__":
    main()
