"""Optimizers stage: routing, scaling rules, bad input, training and exact resume."""

from __future__ import annotations

import io

import pytest
import torch
from omegaconf import OmegaConf

from optlaw.config import compose
from optlaw.errors import ConfigError, UserError
from optlaw.models import build_model
from optlaw.optim import GROUP_NAMES, build_optimizer
from optlaw.optim.factory import MATRIX_ONLY
from optlaw.optim.scaling import resolve

FAMILIES = ["llama", "olmo"]
# Every optimizer name with the overrides that make it act inside a few steps
# (preconditioners refreshed every 3 steps instead of 10).
OPTIMIZERS = {
    "adamw": [],
    "muon": [],
    "shampoo": ["optimizer.shampoo.start_preconditioning_step=3", "optimizer.shampoo.precondition_frequency=3"],
    "soap": ["optimizer.soap.precondition_frequency=3"],
    "generic": ["optimizer.cls=torch_optimizer.Lamb", "optimizer.kwargs.lr=1e-2"],
}
HIDDEN_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                   "gate_proj.weight", "up_proj.weight", "down_proj.weight")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Tiny models: thread start-up costs more than it saves, and CI shares its 2 cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model_cfg(family: str, d_model: int = 64) -> dict:
    return {"family": family, "size": "tiny", "n_layers": 2, "d_model": d_model, "n_heads": 4,
            "ffn_hidden": 2 * d_model, "vocab_size": 256, "seq_len": 32}


def optimizer_cfg(name: str, extra: list[str] | None = None):
    return compose("train", [f"optimizer={name}", *OPTIMIZERS.get(name, []), *(extra or [])]).optimizer


def tiny_model(family: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_model_cfg(family))


def batch(step: int) -> torch.Tensor:
    return torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(1000 + step))


def train_steps(model, bundle, steps: range, fixed_batch: bool = False) -> list[float]:
    losses = []
    for step in steps:
        tokens = batch(0 if fixed_batch else step)
        for group in bundle.param_groups:  # what the trainer does: lr = base_lr * schedule(t)
            group["lr"] = group["base_lr"] * (1.0 - 0.02 * step)
        loss = model(tokens[:, :-1], labels=tokens[:, 1:]).loss
        bundle.zero_grad(set_to_none=True)
        loss.backward()
        bundle.step()
        losses.append(loss.item())
    return losses


# --- routing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["adamw", "muon", "shampoo", "soap"])
def test_every_parameter_is_routed_exactly_once(family, name):
    model = tiny_model(family)
    bundle = build_optimizer(model, optimizer_cfg(name), tiny_model_cfg(family))
    routed = [row["param"] for row in bundle.routing_table]
    assert sorted(routed) == sorted(n for n, _ in model.named_parameters())
    in_groups = [id(p) for g in bundle.param_groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups)) == len(list(model.parameters()))
    by_group = {row["param"]: row["group"] for row in bundle.routing_table}
    for param_name, group in by_group.items():
        if param_name.endswith(HIDDEN_SUFFIXES):
            assert group == "hidden_matrix", param_name
        elif "embed_tokens" in param_name:
            assert group == "embedding"
        elif param_name.startswith("lm_head"):
            assert group == "head"
        else:
            assert group == "norm_bias", param_name
    if family == "olmo":
        assert by_group["model.layers.0.self_attn.q_norm.weight"] == "norm_bias"


@pytest.mark.parametrize("name", ["muon", "shampoo", "soap"])
def test_matrix_optimizers_only_receive_hidden_matrices(name):
    for family in FAMILIES:
        bundle = build_optimizer(tiny_model(family), optimizer_cfg(name), tiny_model_cfg(family))
        matrix_rows = [r for r in bundle.routing_table if r["optimizer"] in MATRIX_ONLY]
        assert matrix_rows and all(r["group"] == "hidden_matrix" and len(r["shape"]) == 2 for r in matrix_rows)
        assert all(r["param"].endswith(HIDDEN_SUFFIXES) for r in matrix_rows)
        for group in bundle.optimizers[name].param_groups:
            assert group["name"] == "hidden_matrix"
        others = {r["group"] for r in bundle.routing_table if r["optimizer"] == "adamw"}
        assert others == {"embedding", "head", "norm_bias"}


def test_matrix_optimizer_on_embeddings_is_refused():
    cfg = optimizer_cfg("muon", ["optimizer.groups.embedding.optimizer=muon"])
    with pytest.raises(ConfigError, match="embedding.*hidden 2-D matrices only"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


def test_unmatched_parameter_is_an_error_naming_it():
    cfg = optimizer_cfg("adamw")
    # Drop the two rules that catch norm gains: the first norm weight is then unrouted.
    cfg.routing.rules = [r for r in cfg.routing.rules if r.get("name") != "norm" and r.get("ndim") != [0, 1]]
    with pytest.raises(ConfigError, match=r"parameter 'model\.layers\.0\..*norm\.weight'.*matches no optimizer.routing rule"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


def test_routing_rules_are_config_a_user_can_change():
    cfg = optimizer_cfg("muon")
    # Move the head into hidden_matrix: rules are matched in order, first match wins.
    cfg.routing.rules.insert(0, OmegaConf.create({"group": "hidden_matrix", "name": r"^lm_head\."}))
    bundle = build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))
    head = next(r for r in bundle.routing_table if r["param"] == "lm_head.weight")
    assert (head["group"], head["optimizer"]) == ("hidden_matrix", "muon")


def test_bad_rule_keys_are_reported():
    cfg = optimizer_cfg("adamw")
    cfg.routing.rules[0] = OmegaConf.create({"group": "embeding", "name": "embed"})
    with pytest.raises(ConfigError, match=r"routing\[0\]\.group is 'embeding'"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


# --- bad input -------------------------------------------------------------------------------------

def test_unknown_optimizer_name():
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'.*adamw.*muon"):
        compose("train", ["optimizer=lion"])
    cfg = optimizer_cfg("adamw", ["optimizer.groups.hidden_matrix.optimizer=lion"])
    with pytest.raises(ConfigError, match="hidden_matrix.optimizer is 'lion'; registered: adamw"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("no_such_package.Lamb", "cannot import module 'no_such_package'"),
        ("torch_optimizer.NoSuchOptimizer", "module 'torch_optimizer' has no class 'NoSuchOptimizer'"),
        ("torch.nn.Linear", "not a torch.optim.Optimizer subclass"),
        ("Lamb", "full import path"),
    ],
)
def test_bad_generic_class_path(cls, message):
    cfg = optimizer_cfg("generic", [f"optimizer.cls={cls}"])
    with pytest.raises(ConfigError, match=message):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


def test_generic_kwargs_that_do_not_fit_the_class():
    cfg = optimizer_cfg("generic", ["optimizer.cls=torch.optim.SGD", "+optimizer.kwargs.betas=[0.9,0.9]"])
    with pytest.raises(ConfigError, match="optimizer.kwargs do not fit torch.optim.SGD"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


def test_errors_are_user_errors_before_any_step():
    cfg = optimizer_cfg("adamw", ["optimizer.lr_mult=0"])
    with pytest.raises(UserError, match="lr_mult"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


# --- scaling rules ---------------------------------------------------------------------------------

def test_mup_lr_rule_and_lr_mult_across_two_widths():
    cfg = OmegaConf.to_container(optimizer_cfg("adamw", ["optimizer.lr_mult=2.0"]), resolve=True)
    narrow = resolve(cfg, {"d_model": 128, "n_layers": 2})
    wide = resolve(cfg, {"d_model": 512, "n_layers": 2})
    base = cfg["groups"]["hidden_matrix"]["lr"]
    assert narrow["groups"]["hidden_matrix"]["lr"] == pytest.approx(2.0 * base)
    assert wide["groups"]["hidden_matrix"]["lr"] == pytest.approx(2.0 * base * 128 / 512)
    for group in ("embedding", "head", "norm_bias"):  # not in lr_groups: width-independent
        assert wide["groups"][group]["lr"] == narrow["groups"][group]["lr"] == pytest.approx(2.0 * cfg["groups"][group]["lr"])


@pytest.mark.parametrize("rule", ["coupled", "independent", "inverse_width"])
def test_weight_decay_rules_across_two_widths(rule):
    cfg = OmegaConf.to_container(optimizer_cfg("adamw", [f"optimizer.scaling.wd_rule={rule}"]), resolve=True)
    base_wd = cfg["groups"]["hidden_matrix"]["weight_decay"]
    r1, r2 = (resolve(cfg, {"d_model": w})["groups"]["hidden_matrix"] for w in (128, 256))
    if rule == "coupled":
        assert r1["weight_decay"] == r2["weight_decay"] == base_wd
    elif rule == "independent":  # per-step decay lr*wd at peak stays the stated value at every width
        assert r1["lr"] * r1["weight_decay"] == pytest.approx(base_wd)
        assert r2["lr"] * r2["weight_decay"] == pytest.approx(base_wd)
        assert r2["lr"] == pytest.approx(r1["lr"] / 2)
    else:
        assert r2["weight_decay"] == pytest.approx(r1["weight_decay"] / 2) == pytest.approx(base_wd / 2)


def test_resolved_numbers_reach_the_param_groups_and_routing_table():
    cfg = optimizer_cfg("shampoo")
    bundle = build_optimizer(tiny_model("olmo"), cfg, tiny_model_cfg("olmo", d_model=64))
    resolved = bundle.resolved
    assert resolved["width"] == 64 and resolved["scaling"]["lr_rule"] == "mup"
    assert resolved["groups"]["hidden_matrix"]["lr"] == pytest.approx(cfg.groups.hidden_matrix.lr * 128 / 64)
    assert set(resolved["hyperparameters"]) == {"shampoo", "adamw"}
    for group in bundle.param_groups:
        spec = resolved["groups"][group["name"]]
        assert group["base_lr"] == group["lr"] == spec["lr"]
        assert group["weight_decay"] == spec["weight_decay"]
    assert {g["name"] for g in bundle.param_groups} == set(GROUP_NAMES)
    row = bundle.routing_table[0]
    assert set(row) == {"param", "shape", "group", "optimizer", "lr", "weight_decay"}


def test_generic_kwargs_lr_sets_every_group():
    bundle = build_optimizer(tiny_model("llama"), optimizer_cfg("generic"), tiny_model_cfg("llama"))
    assert type(bundle.optimizers["generic"]).__name__ == "Lamb"
    assert {g["lr"] for g in bundle.param_groups} == {1e-2}


# --- training and exact resume ---------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_lowers_the_loss(family, name):
    model = tiny_model(family)
    bundle = build_optimizer(model, optimizer_cfg(name), tiny_model_cfg(family))
    losses = train_steps(model, bundle, range(12), fixed_batch=True)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.25, losses


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_from_checkpoint_is_bitwise_exact(family, name):
    cfg, model_cfg = optimizer_cfg(name), tiny_model_cfg(family)
    model = tiny_model(family)
    bundle = build_optimizer(model, cfg, model_cfg)
    uninterrupted = train_steps(model, bundle, range(6))

    first = tiny_model(family)
    bundle_first = build_optimizer(first, cfg, model_cfg)
    train_steps(first, bundle_first, range(3))
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": bundle_first.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)  # only tensors and plain Python inside

    resumed = tiny_model(family, seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(checkpoint["model"])
    bundle_resumed = build_optimizer(resumed, cfg, model_cfg)
    bundle_resumed.load_state_dict(checkpoint["optimizer"])
    continued = train_steps(resumed, bundle_resumed, range(3, 6))

    assert continued == uninterrupted[3:]
    for (n, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), n


def test_loading_state_of_another_optimizer_is_refused():
    model_cfg = tiny_model_cfg("llama")
    adamw = build_optimizer(tiny_model("llama"), optimizer_cfg("adamw"), model_cfg)
    muon = build_optimizer(tiny_model("llama"), optimizer_cfg("muon"), model_cfg)
    with pytest.raises(UserError, match=r"checkpoint holds optimizer state for \['adamw'\]"):
        muon.load_state_dict(adamw.state_dict())


# --- step cost for the run record ------------------------------------------------------------------

def _trained_with_gradients(name: str):
    """A tiny model and its bundle after a few steps (preconditioners running), holding one batch's gradients."""
    model = tiny_model("llama")
    bundle = build_optimizer(model, optimizer_cfg(name), tiny_model_cfg("llama"))
    train_steps(model, bundle, range(4))
    tokens = batch(99)
    model(tokens[:, :-1], labels=tokens[:, 1:]).loss.backward()
    return model, bundle


def test_step_cost_interleaves_windows_over_a_refresh_and_takes_medians(monkeypatch):
    # What the trainer records (optlaw.train.loop calls exactly this function): windows of the run's
    # own optimizer alternate with windows of AdamW, each window as long as one preconditioner refresh,
    # and the times are medians over the repeats (median_high: an observed window, never a mean of two).
    from optlaw.optim import cost

    model, bundle = _trained_with_gradients("shampoo")
    assert cost.amortization_steps(bundle.resolved) == 3  # the test override of precondition_frequency
    now, calls = [0.0], []
    own_windows, adamw_windows = [5.0, 1.0, 3.0, 2.0], [0.5, 0.9, 0.1, 0.4]  # seconds per 3-step window

    def own_step():
        now[0] += own_windows[calls.count("own") // 3] / 3
        calls.append("own")

    class ScriptedAdamW:
        def __init__(self, params):
            self.params = params

        def step(self):
            timed = calls.count("adamw")
            if "adamw warm-up" in calls:
                now[0] += adamw_windows[timed // 3] / 3
                calls.append("adamw")
            else:
                calls.append("adamw warm-up")

    made = []
    monkeypatch.setattr(cost.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(bundle, "step", own_step)
    monkeypatch.setattr(cost, "reference_adamw", lambda params: made.append(ScriptedAdamW(params)) or made[-1])
    live = list(model.parameters())
    grads = [p.grad.clone() for p in live]
    measured = cost.measure_step_cost(model, bundle, repeats=4)
    assert calls == ["adamw warm-up"] + (["own"] * 3 + ["adamw"] * 3) * 4
    assert measured == pytest.approx({"optimizer_step_s": 3.0 / 3, "adamw_step_s": 0.5 / 3, "repeats": 4, "window_steps": 3})
    # AdamW ran on a copy of the live parameters, holding the same gradients.
    copies = made[0].params
    assert len(copies) == len(live) and not any(c is p for c, p in zip(copies, live))
    assert all(torch.equal(c, p) and torch.equal(c.grad, g) for c, p, g in zip(copies, live, grads))


def test_step_cost_steps_the_runs_optimizer_and_adamw_on_a_copy():
    from optlaw.optim import cost

    model, bundle = _trained_with_gradients("shampoo")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps_before = {id(p): int(s["step"]) for p, s in bundle.optimizers["shampoo"].state.items() if "step" in s}
    measured = cost.measure_step_cost(model, bundle, repeats=2)
    assert measured["optimizer_step_s"] > 0 and measured["adamw_step_s"] > 0 and measured["window_steps"] == 3
    # The run's own optimizer was stepped with its state (2 windows of 3 steps) ...
    steps_after = {id(p): int(s["step"]) for p, s in bundle.optimizers["shampoo"].state.items() if "step" in s}
    assert steps_before and all(steps_after[k] == v + 6 for k, v in steps_before.items())
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed  # ... so the live weights moved (the trainer measures after its final checkpoint)
    assert all(p.grad is None for p in model.parameters())  # and its gradients are released
    assert cost.measure_step_cost(model, bundle, repeats=0) == {"optimizer_step_s": None, "adamw_step_s": None, "repeats": 0}


def test_step_cost_reference_is_adamw_as_optlaw_builds_it():
    from optlaw.optim import cost

    model = tiny_model("llama")
    run_adamw = build_optimizer(model, optimizer_cfg("adamw"), tiny_model_cfg("llama")).optimizers["adamw"]
    reference = cost.reference_adamw(list(model.parameters()))
    assert isinstance(reference, torch.optim.AdamW)
    for key in ("fused", "foreach"):  # one kernel choice (optlaw.optim.factory.adamw): fused, on CPU too
        assert reference.defaults[key] == run_adamw.defaults[key], key
    assert reference.defaults["fused"] is True


def test_fused_adamw_computes_the_for_loop_update_up_to_rounding():
    # optlaw.optim.factory.adamw uses torch's fused kernel on CPU for speed; it must not change the run's numerics.
    from optlaw.optim.factory import adamw

    torch.manual_seed(0)
    shapes = [(64, 32), (32,), (1000, 16)]
    fused_params = [torch.randn(s, requires_grad=True) for s in shapes]
    loop_params = [p.detach().clone().requires_grad_() for p in fused_params]
    initial = [p.detach().clone() for p in fused_params]
    fused = adamw([{"params": fused_params, "lr": 1e-2, "weight_decay": 0.1}], betas=(0.9, 0.95), eps=1e-8)
    loop = torch.optim.AdamW([{"params": loop_params, "lr": 1e-2, "weight_decay": 0.1}], betas=(0.9, 0.95), eps=1e-8,
                             foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(20):
        for p, q in zip(fused_params, loop_params):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        fused.step()
        loop.step()
    for p, q, p0 in zip(fused_params, loop_params, initial):
        assert (p - p0).abs().max() > 1e-2  # the weights moved
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_step_cost_ratio_charges_forward_and_backward_once():
    from optlaw.optim.cost import step_cost_ratio

    assert step_cost_ratio(1.0, 0.5, 0.1) == pytest.approx(1.5 / 1.1)
    assert step_cost_ratio(None, 0.5, 0.1) is None and step_cost_ratio(1.0, None, None) is None


def test_meta_shampoo_backend_names_the_missing_package():
    import importlib.util

    if importlib.util.find_spec("distributed_shampoo") is not None:
        pytest.skip("distributed_shampoo is installed here")
    cfg = optimizer_cfg("shampoo", ["optimizer.shampoo.impl=meta"])
    with pytest.raises(ConfigError, match="needs Meta's distributed_shampoo package"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


def test_bad_hyperparameter_value_is_a_config_error():
    cfg = optimizer_cfg("shampoo", ["optimizer.shampoo.betas=[0.9,1.5]"])
    with pytest.raises(ConfigError, match=r"optimizer.shampoo: Shampoo betas must be"):
        build_optimizer(tiny_model("llama"), cfg, tiny_model_cfg("llama"))


@pytest.mark.parametrize("preset", ["llama/1m", "olmo/1m", "llama/150m", "olmo/150m"])
def test_shipped_model_presets_are_fully_routed(preset):
    cfg = compose("train", [f"model={preset}", "optimizer=muon"])
    with torch.device("meta"):  # names and shapes only; no memory for the larger preset
        model = build_model(cfg.model)
    bundle = build_optimizer(model, cfg.optimizer, cfg.model)
    assert sorted(r["param"] for r in bundle.routing_table) == sorted(n for n, _ in model.named_parameters())
    assert {r["group"] for r in bundle.routing_table} == set(GROUP_NAMES)
