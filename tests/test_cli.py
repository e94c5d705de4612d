import re
import shlex
from pathlib import Path

import pytest

from probgen.cli import build_parser, fit_config, main
from probgen.config import FitGANConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_block(name: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- setup:{name} -->\s*```\n(.*?)\n```\s*<!-- /setup:{name} -->", text, re.S)
    assert m, f"README lacks the setup:{name} block"
    return m.group(1).strip()


def test_readme_main_job_parses_with_the_real_cli():
    install = _readme_block("install")
    assert "pip install" in install
    job = install.split("&&")[-1].strip()
    argv = shlex.split(job)
    assert argv[:3] == ["probgen", "fit", "vae"]
    args = build_parser().parse_args(argv[1:])
    assert args.dataset == "dsprites" and args.limit and args.epochs
    assert "pytest" in _readme_block("test")


def test_ci_runs_the_readme_blocks():
    ci = (README.parent / ".ci" / "run").read_text()
    install, test = _readme_block("install"), _readme_block("test")
    # .ci/run names both commands (its guard compares them with README.md) and runs each of them
    assert f"install_cmd='{install}'" in ci and f"test_cmd='{test}'" in ci
    lines = [line.strip() for line in ci.splitlines()]
    for part in (p.strip() for p in install.split("&&")):
        assert any(part in line for line in lines), part
    assert test in lines


@pytest.mark.parametrize("argv", [["--help"], ["fit", "vae", "--help"], ["sample", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fit", "vae", "--beta", "-1"], "--beta"),
        (["fit", "vae", "--latent-dim", "0"], "--latent-dim"),
        (["fit", "vae", "--latent-dim", "ten"], "--latent-dim"),
        (["fit", "vae", "--dataset", "nope"], "--dataset"),
        (["fit", "vae", "--no-such-flag"], "--no-such-flag"),
        (["fit", "vae", "--conv-channels", "8,x"], "--conv-channels"),
        (["fit"], "MODEL"),
        (["sample", "--ckpt", "missing.pt", "--out", "x.png"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("probgen: error:") and needle in err[0]


def test_quiet_silences_info_on_stderr_but_log_txt_keeps_it(tmp_path, capsys):
    from tests.factories import TINY_FLAGS

    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["-q", "fit", "vae", *TINY_FLAGS, "--max-steps", "1", "--out", str(out)]) == 0
    assert "probgen:" not in capsys.readouterr().err
    assert "run directory" in (out / "log.txt").read_text()
    main(["fit", "vae", *TINY_FLAGS, "--max-steps", "1", "--out", str(tmp_path / "run2")])  # not quiet again
    assert "run directory" in capsys.readouterr().err


def test_fit_config_is_the_config_a_fit_command_line_gives(tmp_path):
    settings = tmp_path / "gan.toml"
    settings.write_text("epochs = 7\nlatent_dim = 3\n")
    cfg = fit_config(["gan", "--config", str(settings), "--latent-dim", "5", "--out", "runs/g"])
    assert isinstance(cfg, FitGANConfig) and cfg.run.out == "runs/g"
    assert (cfg.train.epochs, cfg.model.latent_dim) == (7, 5)  # the file's settings, overridden by the flags
