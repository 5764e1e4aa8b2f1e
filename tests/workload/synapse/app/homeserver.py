"""Main process entry point, as `python -m synapse.app.homeserver -c homeserver.yaml`."""
from synapse._workload.app import exit_now, main

if __name__ == "__main__":
    exit_now(main("synapse.app.homeserver"))
