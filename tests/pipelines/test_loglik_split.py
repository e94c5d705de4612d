"""The default `probgen loglik`: the two-phase estimate of the split's mean, its interval's coverage,
the time planner and the CLI defaults."""

import dataclasses
import json
import math

import pytest
import torch

from probgen.cli import main
from probgen.config import FitVAEConfig, LoglikConfig, TrainConfig, VAEConfig
from probgen.errors import UserError
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.testing import PPCA
from probgen.pipelines import loglik as pipeline
from probgen.pipelines import loglik_default
from probgen.pipelines.loglik_plan import (
    DEEP_SCALES,
    MIN_DEEP,
    REPORT_SECONDS,
    per_point_seconds,
    plan_split,
    scaled_deep,
)
from probgen.pipelines.loglik_split import deep_values, two_phase_mean
from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_data, tiny_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _repeats(population, n_cheap, n_deep, repeats, se_scale, seed=0, k=3):
    """``repeats`` independent runs of the whole two-phase procedure on a PPCA split whose per-point
    log p(x) is exact: IWAE_k from an inflated (imperfect) encoder as the cheap bound, the exact value
    plus Gaussian noise of known, per-point se as the trusted estimate. Returns the estimates and the
    split's true mean."""
    m = PPCA.random(8, 2, s=0.5, seed=seed)
    x = m.simulate(population, seed=seed + 1)
    exact = m.log_evidence(x)  # (N,)
    mean, cov = m.posterior(x)
    sd = cov.diagonal().sqrt() * 1.3
    g = torch.Generator().manual_seed(seed + 2)
    z = mean + sd * torch.randn(repeats, k, population, 2, generator=g, dtype=torch.float64)  # (R, k, N, 2)
    log_q = torch.distributions.Normal(mean, sd).log_prob(z).sum(-1)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_lik = torch.distributions.Normal(z @ m.W.T + m.b, m.s).log_prob(x).sum(-1)
    iwae = torch.logsumexp(log_prior + log_lik - log_q, 1) - math.log(k)  # (R, N)
    se = (se_scale * (0.5 + torch.rand(population, generator=g, dtype=torch.float64))).expand(repeats, -1)
    trusted = exact + se * torch.randn(repeats, population, generator=g, dtype=torch.float64)
    order = torch.rand(repeats, population, generator=g).argsort(-1)  # S1: first n_cheap, S2: first n_deep
    s1, s2 = order[:, :n_cheap], order[:, :n_deep]
    est = two_phase_mean(iwae.gather(1, s1), iwae.gather(1, s2), trusted.gather(1, s2), se.gather(1, s2), population)
    return est, exact.mean()


@pytest.mark.parametrize(
    "n_cheap,n_deep,se_scale",
    [(100, 10, 0.2), (300, 10, 0.2), (300, 300, 1.0)],
    ids=["part-of-the-split", "whole-split-cheap", "whole-split-deep-mc-noise-only"],
)
def test_the_interval_covers_the_split_mean_at_its_level(n_cheap, n_deep, se_scale):
    est, truth = _repeats(300, n_cheap, n_deep, repeats=400, se_scale=se_scale)
    covered = ((est.lo <= truth) & (truth <= est.hi)).double().mean().item()
    assert 0.90 <= covered <= 0.985, covered  # 95%: binomial sd over 400 repeats is 0.011
    # not conservative (nor optimistic): the estimated variance matches the estimates' spread
    ratio = (est.variance.mean() / (est.log_px - truth).square().mean()).item()
    assert 0.75 <= ratio <= 1.33, ratio


def test_the_cheap_bound_s_bias_is_corrected():
    est, truth = _repeats(300, 300, 30, repeats=200, se_scale=0.1)
    bias = (est.log_px - truth).mean().item()
    sd = (est.log_px - truth).std().item()
    assert abs(bias) < 3 * sd / math.sqrt(200)  # the IWAE_3 gap (about 0.3 nats) is taken out


def test_the_formula_by_hand():
    cheap = torch.tensor([-10.0, -12.0, -11.0, -15.0, -9.0, -13.0])
    deep_cheap, trusted, se = cheap[:3], torch.tensor([-9.0, -11.5, -10.0]), torch.tensor([0.1, 0.2, 0.3])
    est = two_phase_mean(cheap, deep_cheap, trusted, se, population=10)
    gap = trusted - deep_cheap
    s_t = cheap.var() + gap.var() + 2 * torch.cov(torch.stack([deep_cheap, gap]))[0, 1]
    assert est.log_px.item() == pytest.approx(cheap.mean().item() + gap.mean().item())
    assert est.phase1.item() == pytest.approx((1 / 6 - 1 / 10) * s_t.item())
    assert est.phase2.item() == pytest.approx((1 / 3 - 1 / 6) * gap.var().item())
    assert est.mc.item() == pytest.approx(se.square().mean().item() / 10)
    # every point scored deeply: only the Monte Carlo noise is left, and the t quantile becomes normal
    full = two_phase_mean(trusted, trusted, trusted, se, population=3)
    assert full.log_px.item() == pytest.approx(trusted.mean().item())
    assert full.variance.item() == pytest.approx(se.square().sum().item() / 9)
    assert (full.hi - full.log_px).item() == pytest.approx(1.959964 * math.sqrt(full.variance.item()), rel=1e-5)
    with pytest.raises(ValueError, match="n_deep"):
        two_phase_mean(cheap, cheap[:1], trusted[:1], se[:1], population=10)


def test_flagged_deep_points_enter_at_their_highest_lower_bound_and_widen_the_interval():
    values = {"iwae": torch.tensor([-10.0, -10.0, -10.0]), "ais-laplace": torch.tensor([-9.5, -9.0, -9.8]),
              "appendix-d": torch.tensor([-9.4, -7.0, -12.0])}  # fmt: skip
    se = {"ais-laplace": torch.tensor([0.1, 0.2, math.nan]), "appendix-d": torch.tensor([0.05, 0.1, 0.1])}
    trusted = {"iwae": torch.tensor([True] * 3), "ais-laplace": torch.tensor([True, False, False]),
               "appendix-d": torch.tensor([True, False, False])}  # fmt: skip
    value, err, allowance, source = deep_values(values, se, trusted)
    assert source == ["ais-laplace", "flagged:ais-laplace", "flagged:ais-laplace"]
    assert value.tolist() == pytest.approx([-9.5, -9.0, -9.8]) and err.tolist() == pytest.approx([0.1, 0.2, 0.0])
    assert allowance.tolist() == pytest.approx([0.0, 2.0, 0.0])  # appendix-d's -7 lies 2 nats above
    trusted["ais-laplace"][0] = False  # then the next in line, appendix-d
    assert deep_values(values, se, trusted)[3][0] == "appendix-d"
    est = two_phase_mean(torch.zeros(3), torch.zeros(3), value, err, 3, widening=allowance.mean())
    assert (est.hi - est.log_px).item() > (est.log_px - est.lo).item() + 0.6  # the upper end widened by 2/3


def test_the_planner_fits_the_time():
    plan = plan_split(480.0, 5000, seconds_per_cheap=0.1, seconds_per_deep=20.0, iwae_samples=100, seconds_before=20)
    work = 480 - 20 - REPORT_SECONDS
    assert plan.n_cheap == int(work / 2 / 0.1) and plan.n_deep == int((work - plan.n_cheap * 0.1) / 20)
    assert plan.seconds <= 480 and plan.seconds == pytest.approx(480, abs=20)
    small = plan_split(480.0, 300, 0.1, 20.0, 100)  # the whole split fits: the rest goes to the deep phase
    assert small.n_cheap == 300 and small.n_deep == int((480 - REPORT_SECONDS - 30) / 20)
    slow = plan_split(60.0, 2000, 0.1, 60.0, 100)  # never fewer than MIN_DEEP deep points (then it overruns)
    assert slow.n_deep == MIN_DEEP and slow.seconds > 60
    tiny = plan_split(480.0, 5, 0.1, 1.0, 100)
    assert tiny.n_cheap == tiny.n_deep == 5  # never more deep points than cheap ones
    assert "IWAE (k=100) on 300 points" in small.line("appendix-d + ais-laplace")


def test_the_planner_scales_the_deep_budget_down_to_fit_min_deep_points():
    cost = lambda f: 20.0 * f + 1.0  # noqa: E731  (seconds per deep point at a factor f on its steps)
    plan = plan_split(200.0, 5000, 0.1, cost, 100)  # 92.5 s for the deep phase: 8 x cost(0.5) = 88 fits, 0.75 not
    assert plan.deep_scale == 0.5 and plan.seconds_per_deep == 11.0 and plan.n_deep == MIN_DEEP
    assert plan.seconds <= 200 and "at 50% of the budget's steps" in plan.line("appendix-d")
    assert plan_split(2000.0, 5000, 0.1, cost, 100).deep_scale == 1.0  # time enough: the full budget
    assert plan_split(60.0, 5000, 0.1, cost, 100).deep_scale == DEEP_SCALES[-1]  # never below the floor
    cfg = LoglikConfig(ckpt="x", warmup=200, samples=300, ais_steps=200)
    half = scaled_deep(cfg, 0.5)
    assert (half.warmup, half.samples, half.ais_steps) == (100, 150, 100) and scaled_deep(cfg, 1.0) is cfg


def test_per_point_seconds_counts_the_estimators_evaluations():
    cfg = LoglikConfig(method="elbo,iwae", iwae_samples=100).resolved("cpu")
    assert per_point_seconds(cfg, 10, t_grad=1.0, t_fwd=0.01) == pytest.approx(1.0)
    deep = LoglikConfig(method="ais-laplace", budget="quick").resolved("cpu")
    assert per_point_seconds(deep, 10, 1e-3, 0.0) > (4 + 2) * 300 * 6 * 1e-3  # chains + pilot, T (L + 1)


def test_no_flags_is_the_default_run_and_explicit_flags_run_what_they_say():
    assert LoglikConfig().split_mean and LoglikConfig(time=3).minutes == 3
    for explicit in ({"method": "iwae"}, {"num_data": 5}, {"budget": "quick"}, {"chains": 2}, {"iwae_samples": 9}):
        cfg = LoglikConfig(**explicit)
        assert not cfg.split_mean
        done = cfg.resolved("cpu")
        assert done.methods == cfg.methods and done.num_data == (cfg.num_data or 100)
    assert LoglikConfig().resolved("cpu").methods == ("elbo", "iwae", "appendix-d", "ais")  # today's --method all
    with pytest.raises(UserError, match="--time sizes the default run; it cannot be combined with --num-data"):
        LoglikConfig(time=2, num_data=10)
    with pytest.raises(UserError, match="--time"):
        LoglikConfig(time=0)


def _fake_batch(c, vae, x, **timing):
    """Stand-in estimators (the wiring is under test): per-point values that vary with the image, the
    cheap bound lower than the trusted ones."""
    n = x.shape[0]
    base = -x.flatten(1).sum(1).double() / 50
    se = torch.full((n,), 0.05, dtype=torch.float64)
    shift = {"elbo": -2.0, "iwae": -1.0}
    res = {m: LoglikResult(m, base + shift.get(m, 0.0) + se * torch.randn(n, dtype=torch.float64), x[0].numel(),
                           se=se) for m in c.methods}  # fmt: skip
    return res, None


@pytest.mark.parametrize("real", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["wiring", "estimators"])
def test_the_default_run_answers_resumes_and_keeps_its_results(real, tmp_path, monkeypatch, capsys):
    """End to end on a tiny VAE: the default run's report, resume after Ctrl-C, and no silent overwrite;
    with stand-in estimators (seconds), and (slow) with the real ones at a shrunk deep budget."""
    net = VAEConfig(arch="mlp", hidden_dims=(32,), latent_dim=2)
    run = tmp_path / "run"
    cfg = FitVAEConfig(data=tiny_data(run, limit=200), model=net, train=TrainConfig(epochs=1), run=tiny_run(run))
    ckpt = fit_vae(cfg) / "checkpoint.pt"
    real = loglik_default.phase_configs

    def small(c, device_type):
        cheap, deep = real(c, device_type)
        tiny = {"chains": 2, "warmup": 20, "samples": 20, "ais_steps": 10, "leapfrog_steps": 2}
        return dataclasses.replace(cheap, iwae_samples=8), dataclasses.replace(deep, **tiny)

    monkeypatch.setattr(loglik_default, "phase_configs", small)
    monkeypatch.setattr(loglik_default, "_plan", lambda run, c, ch, de: plan_split(60, 20, 0.01, 10.0, ch.iwae_samples))
    calls = []
    real_batch = pipeline._run_batch if real else _fake_batch

    def interrupting(c, vae, x, **timing):
        calls.append(c.method)
        if "appendix-d" in c.method and calls.count(c.method) == 1:
            raise KeyboardInterrupt
        return real_batch(c, vae, x, **timing)

    monkeypatch.setattr(pipeline, "_run_batch", interrupting)
    argv = ["loglik", "--ckpt", str(ckpt), "--no-progress", "--device", "cpu"]
    assert main(argv) == 130  # the deep phase interrupted: the cheap batches are kept
    cheap_calls = calls.count("elbo,iwae")
    assert main(argv) == 0
    assert calls.count("elbo,iwae") == cheap_calls  # ... and were not computed again
    printed = capsys.readouterr().out
    assert printed.startswith("test split mean log p(x): ")
    out = ckpt.parent / "loglik"
    report = json.loads((out / "loglik.json").read_text())
    sm = report["split_mean"]
    assert list(report)[0] == "split_mean" and sm["n_cheap"] == 20 and sm["n_deep"] == MIN_DEEP
    assert sm["ci95"][0] < sm["log_px"] < sm["ci95"][1] and sm["ci95_bits_per_dim"][0] < sm["bits_per_dim"]
    assert set(sm["flagged_by_reason"]) == {"appendix-d", "ais-laplace"} and sm["population"] == 20
    assert (out / "cheap.csv").read_text().count("\n") == 21 and (out / "loglik.csv").read_text().count("\n") == 9
    before = (out / "loglik.json").read_bytes()
    assert main(argv) == 2 and "already holds results" in capsys.readouterr().err  # never overwritten silently
    assert (out / "loglik.json").read_bytes() == before
