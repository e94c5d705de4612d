"""exact_model: every name builds a model that from_pyro_model accepts, with finite exact log p(x)."""

import pytest
import torch

from probgen.inference import encoder_proposal, from_pyro_model
from probgen.inference.testing import EXACT_MODELS, exact_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", EXACT_MODELS)
def test_every_exact_model_runs_through_the_public_api(name):
    m = exact_model(name, 10, seed=1)
    x = m.simulate(3, seed=2)
    t = from_pyro_model(m.model, x)
    assert (t.num_data, t.latent_dim, t.data_dim) == (3, 10, m.obs_dim) == (3, m.latent_dim, x.shape[1])
    lp, ll = t.log_joint(encoder_proposal(m.guide, x).sample((2,)))
    assert lp.shape == (2, 3) and torch.isfinite(lp + ll).all()
    assert torch.isfinite(m.log_evidence(x)).all() and (m.log_evidence(x) < 0).all()


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown exact model"):
        exact_model("banana", 10)
