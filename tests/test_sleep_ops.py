import pytest
import torch

from sleeptrain.config import Config, ModelConfig, SleepConfig
from sleeptrain.lm.models import build_model
from sleeptrain.sleep import SleepContext, op_class, op_names
from sleeptrain.sleep.homeostasis import protection_masks
from sleeptrain.lm.run_setup import make_optimizer

SPECIAL = {"bos": 0, "eos": 2, "pad": 1}


def trained_model(tie=True):
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2,
                                    tie_embeddings=tie), 50, 16, SPECIAL)
    cfg = Config()
    opt = make_optimizer(model, cfg)
    ids = torch.randint(3, 50, (4, 16))
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    return model, opt, cfg, ids


def run_op(name, ctx, model=None):
    """Build op `name` as a run would and apply it once."""
    return op_class(name)(ctx.cfg, model if model is not None else ctx.unwrapped()).apply(ctx)


def test_registry_has_every_operation():
    assert op_names() == ("replay", "optimizer_reset", "deep_reset", "downscale", "plasticity_decay")


def test_optimizer_reset_keeps_weights_bit_identical_and_zeroes_the_state():
    model, opt, cfg, _ = trained_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert len(opt.state) > 0
    changed = run_op("optimizer_reset", SleepContext(model, opt, cfg, cycle=0))
    assert changed["optimizer_states_cleared"] > 0 and len(opt.state) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_deep_reset_rebuilds_fresh_objects_with_identical_outputs():
    model, opt, cfg, ids = trained_model()
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    ctx = SleepContext(model, opt, cfg, cycle=0, make_optimizer=lambda m: make_optimizer(m, cfg))
    run_op("deep_reset", ctx)
    assert ctx.model is not model and ctx.optimizer is not opt and len(ctx.optimizer.state) == 0
    assert all(p is not q for p, q in zip(ctx.model.parameters(), model.parameters()))
    assert ctx.model.lm_head.weight is ctx.model.model.embed_tokens.weight  # ties survive the rebuild
    with torch.no_grad():
        assert torch.equal(ctx.model.eval()(input_ids=ids).logits, before)


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("kind", ["taylor", "fisher"])
def test_downscale_keeps_exactly_the_protected_weights(scope, kind):
    model, opt, cfg, ids = trained_model(tie=True)
    cfg.sleep = SleepConfig(ops=["downscale"], shrink=0.5, protect_fraction=0.25, scope=scope, importance=kind)
    op = op_class("downscale")(cfg, model)
    importance = op.importance
    model(input_ids=ids, labels=ids).loss.backward()
    op.on_wake_step(model)
    masks = protection_masks(dict(importance.table), 0.25, scope)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    changed = op.apply(SleepContext(model, opt, cfg, cycle=0))
    total = 0
    for name, p in model.named_parameters():
        if name in masks:
            keep = masks[name]
            assert torch.equal(p[keep], before[name][keep])
            assert torch.equal(p[~keep], before[name][~keep] * 0.5)  # tied embedding shrunk once, not twice
            total += keep.numel()
        else:
            assert torch.equal(p, before[name])  # 1-D parameters untouched by default
    assert changed["scaled"] + changed["protected"] == total
    assert changed["protected"] == pytest.approx(0.25 * total, abs=len(masks))
    assert all(float(t.abs().sum()) == 0 for t in importance.table.values())  # reset for the next wake


def test_downscale_fails_loudly_when_importance_matches_nothing():
    model, opt, cfg, _ = trained_model()
    op = op_class("downscale")(cfg, model)
    op.importance.table = {"not.a.parameter": torch.zeros(3)}
    with pytest.raises(RuntimeError, match="matches no parameter"):
        op.apply(SleepContext(model, opt, cfg, cycle=0))


def test_plasticity_decay_reports_the_next_peak_scale():
    model, opt, cfg, _ = trained_model()
    cfg.sleep = SleepConfig(ops=["plasticity_decay"], plasticity_decay=0.5)
    assert run_op("plasticity_decay", SleepContext(model, opt, cfg, cycle=1)) == {"peak_lr_scale_next_cycle": 0.25}


@pytest.mark.parametrize("source,wake_counts,sleep_counts", [("wake", True, False), ("sleep", False, True),
                                                              ("both", True, True)])
def test_importance_is_gathered_where_asked(source, wake_counts, sleep_counts):
    model, opt, cfg, ids = trained_model()
    cfg.sleep = SleepConfig(ops=["replay", "downscale"], importance="fisher", importance_from=source)
    op = op_class("downscale")(cfg, model)
    model(input_ids=ids, labels=ids).loss.backward()
    op.on_wake_step(model)
    after_wake = sum(float(t.sum()) for t in op.importance.table.values())
    op.on_sleep_step(model)
    after_sleep = sum(float(t.sum()) for t in op.importance.table.values())
    assert (after_wake > 0) == wake_counts
    assert (after_sleep > after_wake) == sleep_counts


def test_pruning_zeroes_the_weakest_unprotected_weights():
    from sleeptrain.sleep.homeostasis import prune_weakest

    p = torch.tensor([0.5, -0.1, 0.05, 2.0, -0.3, 0.01])
    candidates = torch.tensor([True, True, True, False, True, False])   # 2.0 and 0.01 are protected
    assert prune_weakest(p, candidates, 0.5) == 2
    assert p.tolist() == pytest.approx([0.5, 0.0, 0.0, 2.0, -0.3, 0.01])  # 0.05 and -0.1 went; 0.01 is protected
    model, opt, cfg, ids = trained_model()
    cfg.sleep = SleepConfig(ops=["downscale"], shrink=0.9, protect_fraction=0.2, prune_fraction=0.1)
    op = op_class("downscale")(cfg, model)
    model(input_ids=ids, labels=ids).loss.backward()
    op.on_wake_step(model)
    changed = op.apply(SleepContext(model, opt, cfg, cycle=0))
    assert changed["pruned"] == pytest.approx(0.1 * changed["scaled"], abs=len(op.importance.table))


def test_importance_from_sleep_needs_replay_steps():
    from sleeptrain.errors import ConfigError

    with pytest.raises(ConfigError, match="sleep.importance_from"):
        SleepConfig(ops=["downscale"], importance_from="sleep")
    with pytest.raises(ConfigError, match="sleep.prune_fraction"):
        SleepConfig(ops=["downscale"], prune_fraction=1.0)


@pytest.mark.parametrize("arch", ["llama", "roberta_prelayernorm"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_per_sample_fisher_sums_each_samples_squared_gradient(arch, with_mask):
    """`fisher_per_sample` (CLIMB-Sleep's empirical Fisher): sum over the batch of each sample's squared gradient of
    its own mean token loss — checked against one backward per sample; differs from the batch gradient squared."""
    from functools import partial

    from sleeptrain.lm.losses import per_sample_loss, sample_loss_from_logits, token_losses
    from sleeptrain.sleep.hooks import StepBatch

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2,
                                    norm_eps=1e-5), 50, 16, SPECIAL)
    masked = arch != "llama"
    ids = torch.randint(3, 50, (5, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # a shorter row: padding carries no label
    labels = ids.masked_fill(mask == 0, -100)
    if masked:
        labels = labels.masked_fill(torch.rand(ids.shape) > 0.4, -100)
    cfg = Config()
    cfg.sleep = SleepConfig(ops=["replay", "downscale"], importance="fisher_per_sample", include_norms=True)
    op = op_class("downscale")(cfg, model)
    loss_fn = partial(sample_loss_from_logits, causal=not masked)  # what the loop hands over
    op.on_step_batch(model, StepBatch(ids, mask if with_mask else None, labels, masked, loss_fn), "wake")
    op.on_step_batch(model, StepBatch(ids, None, labels, masked, loss_fn), "sleep")  # importance_from=wake: ignored
    expected = {name: torch.zeros_like(t) for name, t in op.importance.table.items()}
    params = dict(model.named_parameters())
    for i in range(len(ids)):
        model.zero_grad()
        kwargs = {"attention_mask": mask[i:i + 1]} if with_mask else {}
        loss, counted = token_losses(model(input_ids=ids[i:i + 1], **kwargs).logits, labels[i:i + 1], not masked)
        per_sample_loss(loss, counted)[0].backward()
        for name in expected:
            expected[name] += params[name].grad.float() ** 2
    for name, table in op.importance.table.items():
        torch.testing.assert_close(table, expected[name], rtol=1e-4, atol=1e-10)
    op.on_wake_step(model)  # the summed-gradient path adds nothing for this kind
    torch.testing.assert_close(op.importance.table[name], expected[name], rtol=1e-4, atol=1e-10)
