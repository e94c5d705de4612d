"""GANConfig, GANTrainConfig, MetricsConfig and the command configs built from them."""

import pytest

from probgen.config import EvalCommandConfig, FitGANConfig, GANConfig, GANTrainConfig, MetricsConfig, from_dict, to_dict
from probgen.errors import UserError


@pytest.mark.parametrize(
    ("build", "flag"),
    [
        (lambda: GANConfig(g_norm="layer"), "--g-norm"),
        (lambda: GANConfig(d_norm="group"), "--d-norm"),
        (lambda: GANConfig(init="xavier"), "--init"),
        (lambda: GANConfig(latent_dist="cauchy"), "--latent-dist"),
        (lambda: GANConfig(output="relu"), "--output"),
        (lambda: GANTrainConfig(beta1=1.0), "--beta1"),
        (lambda: GANTrainConfig(ema_decay=1.0), "--ema-decay"),
        (lambda: GANTrainConfig(eval_every=1, early_stop_patience=0), "--early-stop-patience"),
        (lambda: MetricsConfig(features="clip"), "--features"),
        (lambda: MetricsConfig(metrics=("fid", "fid")), "--metrics"),
        (lambda: MetricsConfig(features="inception", is_splits=0), "--is-splits"),
        (lambda: MetricsConfig(kid_subset_size=1), "--kid-subset-size"),
    ],
)
def test_bad_values_name_their_flag(build, flag):
    with pytest.raises(UserError, match=flag):
        build()


def test_default_metrics_follow_the_feature_network():
    assert MetricsConfig(features="inception").metric_names() == ("fid", "kid", "is")
    assert MetricsConfig(features="domain").metric_names() == ("fid", "kid")
    assert MetricsConfig(features="inception", metrics=("is",)).metric_names() == ("is",)


def test_round_trip_through_dict():
    cfg = FitGANConfig(
        model=GANConfig(g_norm="instance", d_norm="none", init="he"),
        train=GANTrainConfig(sample_epochs=(1, 3), eval_every=2, early_stop_patience=4),
        eval=MetricsConfig(metrics=("fid",), num_real=500),
    )
    assert from_dict(FitGANConfig, to_dict(cfg)) == cfg
    assert from_dict(EvalCommandConfig, to_dict(EvalCommandConfig())) == EvalCommandConfig()
