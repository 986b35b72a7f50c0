"""sleeptrain: sleep-inspired training schedules for neural networks.

The Python API (docs/PYTHON_API.md), loaded on first use so that `import sleeptrain` (and `sleeptrain.config`)
stays free of torch:

    sleeptrain.load_config(*words, **options) -> Config       the CLI's config, keyword options as sections
    sleeptrain.train(*words, resume=None, **options)           `sleeptrain train` -> RunResult
    sleeptrain.SleepSchedule(preset, total_steps=..., ...)     sleep in your own PyTorch loop
    sleeptrain.SleepCallback([...])                            sleep in a transformers.Trainer
"""

__version__ = "0.1.0"

# name -> the module defining it. The only imports from the package's top: resolved lazily (PEP 562) by
# __getattr__, so the lowest layer (this file) imports nothing at import time (tests/test_layers.py).
_API = {"load_config": "sleeptrain.api", "train": "sleeptrain.api",
        "SleepSchedule": "sleeptrain.integrations.sleep_schedule",
        "SleepCallback": "sleeptrain.integrations.hf_trainer"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'sleeptrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
