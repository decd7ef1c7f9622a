"""Not implemented yet: see the open issues."""

import sys

if __name__ == "__main__":
    print("train.py: not implemented yet", file=sys.stderr)
    sys.exit(2)
