"""Applications: jobs that compose the engines (training, index, report) into one run a user starts.

- :mod:`pairsim.jobs.demo`: the main job (``pairsim demo`` / ``make demo``).

The command line (``pairsim.cli``) and the service (``pairsim.service``) are thin shells over jobs and
engines; a job never imports them.
"""
