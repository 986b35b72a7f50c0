"""Sleep in your own PyTorch loop: a nanoGPT-style character model, trained with replay, downscaling and an LR restart
at every sleep (sleeptrain.SleepSchedule; docs/PYTHON_API.md). Resumable bit for bit:

    python examples/own_loop_sleep.py --out model.pt                    # 240 steps
    python examples/own_loop_sleep.py --out model.pt --stop-at 100      # stop after 100 steps (checkpoint saved)
    python examples/own_loop_sleep.py --out model.pt --resume ckpt.pt   # ... and continue: the same model.pt
"""
import argparse

import torch
import torch.nn.functional as F

import sleeptrain
from sleeptrain.data.grammar import generate_splits

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=240)
p.add_argument("--stop-at", type=int, default=None)
p.add_argument("--resume", default=None)
p.add_argument("--ckpt", default="ckpt.pt")
p.add_argument("--out", default="model.pt")
args = p.parse_args()

text = " ".join(generate_splits(2000, 10, 10, seed=0)["train"])
chars = sorted(set(text))
data = torch.tensor([chars.index(c) for c in text])
block, batch_size, base_lr = 16, 32, 3e-3
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Embedding(len(chars), 32), torch.nn.Flatten(),
                            torch.nn.Linear(32 * block, 128), torch.nn.ReLU(), torch.nn.Linear(128, len(chars)))
optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr)
schedule = sleeptrain.SleepSchedule("homeostasis", total_steps=args.steps, every_steps=60, batch_size=batch_size,
                                    sleep={"ops": ["optimizer_reset", "replay", "downscale"]},
                                    replay={"strategy": "recency"}, warmup_steps=10).bind(model, optimizer)
rng = torch.Generator().manual_seed(1)
if args.resume:
    saved = torch.load(args.resume, weights_only=False)
    model.load_state_dict(saved["model"]), optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"]), rng.set_state(saved["rng"])

for step in range(schedule.step, args.steps):
    if step == args.stop_at:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "rng": rng.get_state()}, args.ckpt)
        raise SystemExit(f"stopped at step {step}: continue with --resume {args.ckpt}")
    for group in optimizer.param_groups:
        group["lr"] = base_lr * schedule.lr_factor(step)
    if schedule.sleeping(step):
        windows = schedule.replay_batch()              # earlier wake samples
    else:
        starts = torch.randint(len(data) - block - 1, (batch_size,), generator=rng)
        windows = schedule.observe(torch.stack([data[s:s + block + 1] for s in starts]))
    loss = F.cross_entropy(model(windows[:, :-1]), windows[:, -1])
    loss.backward()
    schedule.before_optimizer_step(model)
    optimizer.step()
    optimizer.zero_grad()
    if not schedule.after_step(step, optimizer):
        break
schedule.end(optimizer)
torch.save(model.state_dict(), args.out)
print(f"loss {loss.item():.4f}; sleeps: {[(e['step'], e['end']) for e in schedule.events]}")
