"""`python -m sharebert ...` is the `sharebert` command; `deepspeed --module sharebert pretrain ...` starts it too."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
