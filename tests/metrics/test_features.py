import pytest
import torch

from probgen.errors import UserError
from probgen.metrics import features
from probgen.metrics.features import INCEPTION_FILE, find_inception_weights, load_inception


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(features.ENV_WEIGHTS, raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints" / INCEPTION_FILE


def test_missing_weights_say_which_file_goes_where(empty_hub):
    with pytest.raises(UserError) as exc:
        find_inception_weights(None)
    msg = str(exc.value)
    assert INCEPTION_FILE in msg and str(empty_hub) in msg and "--inception-weights" in msg
    assert "\n" not in msg


def test_named_missing_files_are_user_errors(empty_hub, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--inception-weights: no such file"):
        find_inception_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(features.ENV_WEIGHTS, str(tmp_path / "gone.pth"))
    with pytest.raises(UserError, match="PROBGEN_INCEPTION_WEIGHTS"):
        find_inception_weights(None)


def test_lookup_order_flag_env_hub(empty_hub, tmp_path, monkeypatch):
    empty_hub.parent.mkdir(parents=True)
    empty_hub.write_bytes(b"x")
    assert find_inception_weights(None) == empty_hub
    env = tmp_path / "env.pth"
    env.write_bytes(b"x")
    monkeypatch.setenv(features.ENV_WEIGHTS, str(env))
    assert find_inception_weights(None) == env
    flag = tmp_path / "flag.pth"
    flag.write_bytes(b"x")
    assert find_inception_weights(flag) == flag


def test_foreign_and_unsafe_weight_files_are_refused(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(UserError, match="not torch-fidelity's Inception"):
        load_inception(other)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"fc.weight": torch.zeros(2), "obj": torch.nn.ReLU()}, unsafe)  # a pickled module
    with pytest.raises(UserError, match="cannot read"):
        load_inception(unsafe)


def test_inception_from_a_local_file_matches_torchmetrics(tmp_path):
    """Our loader (weights_only read, one pass for pool features and logits) gives torchmetrics' features."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    torch.manual_seed(0)
    state = features._random_inception_state()
    path = tmp_path / INCEPTION_FILE
    torch.save(state, path)
    ours = load_inception(path)
    ref = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path), antialias=False)
    gray = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8)
    with torch.inference_mode():
        f, logits = ours(gray)
        f_ref = ref(gray.expand(-1, 3, -1, -1))
    assert f.shape == (1, 2048) and logits.shape == (1, 1008)
    assert f.abs().max() > 0.01  # random He-init weights: activations of O(1), not vanishing
    assert torch.allclose(f, f_ref, rtol=1e-5, atol=1e-5 * f_ref.abs().max())  # channels-last: other sum order
    assert torch.allclose(logits, f_ref @ state["fc.weight"].T, rtol=1e-4, atol=1e-4 * logits.abs().max())
    assert ours.name == "inception-v3-compat" and ours.resize.startswith("legacy-tf 299")
    assert ours.fingerprint == f"{INCEPTION_FILE}:{path.stat().st_size}"


def test_float_resize_modes_enter_the_same_network(tmp_path):
    """The float path (clean, legacy-pytorch, ...) runs torch-fidelity's layers after its resize: at 299 px,
    where every resize is the identity, it gives the uint8 path's features; below, the modes differ."""
    torch.manual_seed(0)
    net = load_inception(random_weights=True, resize="clean")
    legacy = load_inception(random_weights=True, resize="legacy-tf")
    legacy.load_state_dict(net.state_dict())
    big = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8)
    small = torch.randint(0, 256, (1, 3, 24, 24), dtype=torch.uint8)
    with torch.inference_mode():
        a, b = net(big)[0], legacy(big)[0]
        c, d = net(small)[0], legacy(small)[0]
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max())
    assert (c - d).abs().max() > 1e-3 * d.abs().max()
    assert net.resize.startswith("clean 299: PIL bicubic")
