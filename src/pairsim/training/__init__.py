"""The training engine: the trainer, its configuration, checkpoints, evaluation during training and torchrun.

``pairsim.training.run.train(config)`` runs a configuration end to end; :class:`~pairsim.training.trainer.Trainer`
is the loop itself; :mod:`pairsim.training.config` holds the frozen configuration dataclasses.
"""
