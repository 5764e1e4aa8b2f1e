"""Old-style worker entry point, still accepted by Synapse; behaves like generic_worker."""
import sys

from synapse._workload.app import main

if __name__ == "__main__":
    sys.exit(main("synapse.app.synchrotron"))
