"""run_state: whether a fit in a run directory starts, resumes or is skipped (`probgen sweep`, experiments)."""

import pytest

from probgen.cli import fit_config
from probgen.training.guards import Interrupted
from probgen.training.rundir import run_state
from probgen.training.trainers.vae import fit_vae
from tests.factories import SMALL_FIT_VAE


def config(out, *flags):
    return fit_config([*SMALL_FIT_VAE, *map(str, flags), "--out", str(out)])


def test_a_run_goes_from_new_to_started_to_finished_and_back(tmp_path, interrupt_fit):
    out = tmp_path / "run"
    one = config(out, "--epochs", 1)
    assert run_state(out, one) == "new"
    interrupt_fit(5)
    with pytest.raises(Interrupted):
        fit_vae(one)
    assert run_state(out, one) == "started"  # a checkpoint at step 5, no metrics.json
    fit_vae(config(out, "--epochs", 1, "--resume"))
    assert run_state(out, one) == "finished"
    assert run_state(out, config(out)) == "finished"  # --epochs at its default: the run's own, as on --resume
    assert run_state(out, config(out, "--epochs", 1, "--latent-dim", 3)) == "started"  # a resume refuses it
    two = config(out, "--epochs", 2)
    assert run_state(out, two) == "started"  # asked to go further
    interrupt_fit(12)
    with pytest.raises(Interrupted):
        fit_vae(config(out, "--epochs", 2, "--resume"))
    # the checkpoint (step 12, 2 epochs) has moved past metrics.json (step 9): not finished
    assert run_state(out, two) == "started"
    fit_vae(config(out, "--epochs", 2, "--resume"))
    assert run_state(out, two) == "finished"


def test_a_run_killed_before_its_first_checkpoint_is_started(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a fit writes before its first step
    assert run_state(out, config(out, "--epochs", 1)) == "started"  # --resume starts it again in place


def test_a_fit_refused_while_building_its_model_can_be_run_again_in_the_same_folder(tmp_path, capsys):
    from probgen.cli import main

    out = tmp_path / "run"
    bad = [*SMALL_FIT_VAE, "--image-size", "18", "--out", str(out)]
    assert main(["fit", *bad]) != 0  # 18 px does not divide by 4 (two stride-2 layers): refused after --out was made
    assert [p.name for p in out.iterdir()] == ["log.txt"]
    first_log = (out / "log.txt").read_text()
    fit_vae(config(out, "--max-steps", 2))  # the corrected command is not refused as "already holds a run"
    assert (out / "checkpoint.pt").is_file()
    assert (out / "log.txt").read_text().startswith(first_log)  # the failed attempt's log is kept
