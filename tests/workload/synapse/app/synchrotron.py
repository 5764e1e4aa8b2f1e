"""Old-style worker entry point, still accepted by Synapse; behaves like generic_worker."""
from synapse._workload.app import exit_now, main

if __name__ == "__main__":
    exit_now(main("synapse.app.synchrotron"))
