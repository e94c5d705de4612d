import pytest

from probgen.config import DataConfig, FitVAEConfig, TrainConfig, VAEConfig, from_dict, to_dict
from probgen.errors import UserError


@pytest.mark.parametrize(
    ("build", "flag"),
    [
        (lambda: TrainConfig(beta=-1.0), "--beta"),
        (lambda: TrainConfig(beta=0.0), "--beta"),
        (lambda: VAEConfig(latent_dim=0), "--latent-dim"),
        (lambda: TrainConfig(batch_size=0), "--batch-size"),
        (lambda: TrainConfig(beta_schedule="cosine"), "--beta-schedule"),
        (lambda: DataConfig(limit=-3), "--limit"),
        (lambda: DataConfig(channels=2), "--channels"),
        (lambda: VAEConfig(activation="tanh"), "--activation"),
    ],
)
def test_bad_values_name_their_flag(build, flag):
    with pytest.raises(UserError, match=flag):
        build()


def test_round_trip_through_dict():
    cfg = FitVAEConfig(model=VAEConfig(conv_channels=(16, 32), latent_dim=3), train=TrainConfig(sample_epochs=(1, 5)))
    again = from_dict(FitVAEConfig, to_dict(cfg))
    assert again == cfg
    assert isinstance(again.model.conv_channels, tuple)


def test_unknown_key_is_a_user_error():
    data = to_dict(FitVAEConfig())
    data["model"]["latent_dimension"] = 3
    with pytest.raises(UserError, match="latent_dimension"):
        from_dict(FitVAEConfig, data)
