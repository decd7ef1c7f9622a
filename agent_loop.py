"""Not implemented yet: see the open issues."""

import sys

if __name__ == "__main__":
    print("agent_loop.py: not implemented yet", file=sys.stderr)
    sys.exit(2)
