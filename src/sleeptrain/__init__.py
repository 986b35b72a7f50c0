"""sleeptrain: sleep-inspired training schedules for neural networks."""

__version__ = "0.1.0"
