"""sleeptrain's sleep operations driven from other people's training loops.

    hf_trainer.py   `SleepCallback`: the registered sleep ops as a `transformers.TrainerCallback`, configured from
                    the same presets and `key=value` words as `sleeptrain train`; `CycleLR`: the Trainer's own LR
                    shape restarted at every sleep that starts a fresh LR cycle
    hf_replay.py    `ReplayStream`: replay for it — the training data as a seeded wake/sleep stream; `SleepPlan`: where
                    its sleeps fall
"""
