"""The workload behind the synapse.app.* entry points (not part of real Synapse)."""
