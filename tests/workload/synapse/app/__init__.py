"""Entry points named like Synapse's: synapse.app.homeserver, synapse.app.generic_worker, ..."""
