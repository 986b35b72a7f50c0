"""An ordinary `transformers.Trainer` script with sleep added by one callback.

    python examples/hf_trainer_sleep.py --output_dir out --max_steps 60 --save_steps 30 --logging_steps 1 --use_cpu
    python examples/hf_trainer_sleep.py --output_dir out --max_steps 60 --save_steps 30 --logging_steps 1 --use_cpu \
        --resume_from_checkpoint out/checkpoint-30

Every `TrainingArguments` flag works as in the official example scripts (`HfArgumentParser`). The corpus is the
demo's generated English (`sleeptrain.data.grammar`), the tokenizer a byte-level BPE trained on it, the model a tiny
Llama. The sleep comes from `--sleep` (the words `sleeptrain train` takes; here FORGETTER's light sleep — AdamW state
cleared and a fresh LR cycle — then replay of randomly chosen past samples for a quarter as many steps as the wake
phase, then synaptic downscaling) after every `--sleep_every` wake optimizer steps; with replay the training data is
the callback's wake/sleep stream, so `--max_steps` is required. The sleeps run are listed in trainer_state.json under
`stateful_callbacks.SleepCallback`; the LR restarts show in its `log_history`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from transformers import (DataCollatorForLanguageModeling, HfArgumentParser, LlamaConfig, LlamaForCausalLM, Trainer,
                          TrainingArguments, set_seed)

from sleeptrain.data.grammar import generate_sentences
from sleeptrain.data.tokenizer import train_bpe
from sleeptrain.integrations.hf_trainer import SleepCallback


@dataclass
class SleepArguments:
    sleep: str = field(default="schedule=homeostasis sleep.ops=[optimizer_reset,replay,downscale] sleep.shrink=0.9 "
                               "replay.strategy=random replay.context_augment=false",
                       metadata={"help": "sleeptrain words: schedule=<preset> and schedule.*/sleep.*/replay.* keys"})
    sleep_every: int = field(default=20, metadata={"help": "wake optimizer steps between sleeps"})
    sentences: int = field(default=4000, metadata={"help": "generated training sentences"})
    block_size: int = field(default=32, metadata={"help": "tokens per training sample"})


def build_dataset(tokenizer, sentences: list[str], block_size: int) -> list[dict]:
    """Documents as `<s> text </s>` laid end to end and cut into blocks (the usual `group_texts`)."""
    ids = [t for ids in tokenizer(sentences)["input_ids"] for t in ids]
    return [{"input_ids": ids[i:i + block_size]} for i in range(0, len(ids) - block_size + 1, block_size)]


def main() -> None:
    sleep_args, training_args = HfArgumentParser((SleepArguments, TrainingArguments)).parse_args_into_dataclasses()
    set_seed(training_args.seed)  # before the model is built, as the official scripts do
    sentences = generate_sentences(sleep_args.sentences, seed=training_args.seed)
    tokenizer = train_bpe(sentences, vocab_size=512)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=sleep_args.block_size,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.pad_token_id))
    sleep = SleepCallback(shlex.split(sleep_args.sleep), every_steps=sleep_args.sleep_every)
    dataset = build_dataset(tokenizer, sentences, sleep_args.block_size)
    if "replay" in sleep.cfg.sleep.ops:  # the sleeps replay past samples: the data becomes a wake/sleep stream
        per_step = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                    * training_args.world_size)
        dataset = sleep.replay_stream(dataset, samples_per_step=per_step, seed=training_args.seed)
    trainer = Trainer(model=model, args=training_args, processing_class=tokenizer, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[sleep])
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()


if __name__ == "__main__":
    main()
