import numpy as np
import pytest
import torch

from probgen.errors import UserError
from probgen.inference.mcmc.diagnostics import (
    diagnose,
    load_chains,
    plot_chains,
    save_chains,
    to_inference_data,
    worst_points,
)
from probgen.inference.mcmc.hmc import HMCResult


def _run(c=4, s=300, n=3, d=2, seed=0):
    """Synthetic chains: point 0 iid N(0, 1); point 1 has one chain stuck elsewhere; point 2 is a slow AR(1)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(c, s, n, d, generator=g, dtype=torch.float64)
    z[0, :, 1] += 3.0  # chain 0 of point 1 explores another mode: R-hat >> 1
    ar = torch.zeros(c, s, d, dtype=torch.float64)
    for t in range(1, s):
        ar[:, t] = 0.995 * ar[:, t - 1] + 0.1 * z[:, t, 2]
    z[:, :, 2] = ar  # ESS of a few per chain
    diverging = torch.zeros(c, s, n, dtype=torch.bool)
    diverging[1, 5, 1] = True
    return HMCResult(
        samples=z,
        potential=0.5 * z.square().sum(-1),
        accept_prob=torch.full((c, s, n), 0.8, dtype=torch.float64),
        diverging=diverging,
        step_size=torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64),
        inverse_mass=torch.ones(n, d, dtype=torch.float64),
        num_grad_evals=123,
    )


def test_inference_data_has_the_documented_dims_and_round_trips(tmp_path):
    idata = to_inference_data(_run(), point_index=[10, 11, 12], attrs={"sampler": "hmc"})
    assert idata.posterior["z"].dims == ("chain", "draw", "datapoint", "latent")
    assert idata.posterior["z"].shape == (4, 300, 3, 2)
    assert idata.sample_stats["diverging"].dims == ("chain", "draw", "datapoint")
    assert list(idata.posterior["datapoint"].values) == [10, 11, 12]
    path = save_chains(idata, tmp_path / "chains.nc")
    back = load_chains(tmp_path)  # a folder means its chains.nc
    np.testing.assert_array_equal(back.posterior["z"].values, idata.posterior["z"].values)
    np.testing.assert_allclose(back.sample_stats["lp"].values, -_run().potential.numpy())
    assert back.attrs["sampler"] == "hmc" and path.name == "chains.nc"


def test_diagnose_flags_unmixed_points_only():
    checks = diagnose(to_inference_data(_run()), rhat_max=1.01, min_ess_per_chain=100)
    assert checks.min_ess == 400
    assert checks.rhat[0] < 1.01 and checks.ess_bulk[0] > 400  # iid draws pass
    assert checks.rhat[1] > 1.3  # a chain in another place
    assert checks.ess_bulk[2] < 100  # a slow chain
    assert checks.failed.tolist() == [False, True, True] and checks.num_failed == 2
    assert checks.divergences.tolist() == [0, 1, 0]
    assert checks.ess_lp.shape == (3,) and checks.ess_lp[0] > 400 and checks.ess_lp[2] < 100  # lp = -|z|^2 / 2
    assert checks.rows()[0]["ess_lp"] == pytest.approx(checks.ess_lp[0])
    summary = checks.summary()
    assert summary["failed_datapoints"] == [1, 2] and summary["divergences_total"] == 1
    assert worst_points(checks, 2) == [2, 1]  # largest R-hat first
    assert np.allclose(checks.accept_rate, 0.8)


def test_plots_are_pngs(tmp_path):
    idata = to_inference_data(_run(s=50), point_index=[7, 8, 9])
    paths = plot_chains(idata, [8], tmp_path)
    assert [p.name for p in paths] == ["trace_dp8.png", "rank_dp8.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_chains_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such chains file"):
        load_chains(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(UserError, match="not a readable NetCDF"):
        load_chains(junk)
