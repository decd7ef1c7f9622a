"""Not implemented yet: see the open issues."""

import sys

if __name__ == "__main__":
    print("analyze.py: not implemented yet", file=sys.stderr)
    sys.exit(2)
