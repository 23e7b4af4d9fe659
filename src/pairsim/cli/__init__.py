"""The ``pairsim`` command line."""
