"""Worker entry point, as `python -m synapse.app.generic_worker -c worker.yaml`."""
import sys

from synapse._workload.app import main

if __name__ == "__main__":
    sys.exit(main("synapse.app.generic_worker"))
