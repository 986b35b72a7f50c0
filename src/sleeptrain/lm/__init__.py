"""The language-model core: models, losses, the phase plan and LR schedules, the training loop, checkpoints."""
