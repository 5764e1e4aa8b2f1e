"""Main process entry point, as `python -m synapse.app.homeserver -c homeserver.yaml`."""
import sys

from synapse._workload.app import main

if __name__ == "__main__":
    sys.exit(main("synapse.app.homeserver"))
