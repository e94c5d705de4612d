"""Property tests: random flags, values and bytes give a clear error or a valid config, never a traceback."""

import string

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probgen.cli import build_parser, config_from_args
from probgen.config import DataConfig, FitVAEConfig
from probgen.data import load_dataset
from probgen.errors import UserError

FLAGS = [
    "--latent-dim", "--beta", "--batch-size", "--lr", "--epochs", "--max-steps", "--limit", "--conv-channels",
    "--hidden-dims", "--beta-schedule", "--elbo", "--device", "--kernel-size", "--dropout", "--activation",
    "--likelihood", "--obs-scale", "--channels", "--image-size", "--test-fraction", "--sample-epochs", "--arch",
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-5, 5000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(string.printable, max_size=12),
    st.sampled_from(["1,2,3", "8,x", ",", "relu", "linear", "cuda", "auto", "-0", "1e-3", "nan"]),
)


def parse(argv: list[str]) -> FitVAEConfig | None:
    """What `probgen fit vae` does before training: parse flags and build the validated config."""
    try:
        args = build_parser().parse_args(["fit", "vae", *argv])
        return config_from_args(FitVAEConfig, args)
    except UserError as exc:
        assert "\n" not in str(exc).strip() or len(str(exc)) < 2000
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=6))
def test_random_flags_never_crash(pairs):
    argv = [x for pair in pairs for x in pair]
    cfg = parse(argv)
    if cfg is not None:
        assert cfg.model.latent_dim >= 1 and cfg.train.beta > 0 and cfg.train.batch_size >= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(string.printable, max_size=15), max_size=8))
def test_random_argv_never_crashes(argv):
    parse(argv)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_as_dsprites_file(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz").write_bytes(data)
    try:
        load_dataset(DataConfig(data_root=str(root), limit=4))
    except UserError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["imgs", "latents_values", "latents_classes"]), st.lists(st.integers(0, 5), max_size=4))
def test_npz_with_odd_arrays(tmp_path_factory, key, shape):
    root = tmp_path_factory.mktemp("fuzz")
    arrays = {
        "imgs": np.zeros((3, 64, 64), np.uint8),
        "latents_values": np.zeros((3, 6)),
        "latents_classes": np.zeros((3, 6), int),
    }
    arrays[key] = np.zeros(shape, arrays[key].dtype)
    np.savez(root / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", **arrays)
    try:
        load_dataset(DataConfig(data_root=str(root), test_fraction=0.0))
    except UserError:
        pass


def _png_bytes(w: int, h: int, mode: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="PNG")
    return buf.getvalue()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),  # garbage
            st.builds(_png_bytes, st.integers(1, 40), st.integers(1, 40), st.sampled_from(["L", "RGB", "RGBA", "P"])),
            st.builds(lambda b, n: b[:n], st.just(_png_bytes(20, 20, "RGB")), st.integers(0, 80)),  # truncated
        ),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_random_image_files_in_a_folder(tmp_path_factory, files, skip_bad):
    root = tmp_path_factory.mktemp("fuzzimg")
    for i, data in enumerate(files):
        (root / f"img{i}.png").write_bytes(data)
    try:
        data = load_dataset(
            DataConfig(dataset="folder", data_root=str(root), image_size=16, skip_bad=skip_bad, test_fraction=0.0)
        )
    except UserError:
        return
    images = data.splits["train"].images
    assert images.dtype == torch.uint8 and images.shape[1:] in {(1, 16, 16), (3, 16, 16)}
