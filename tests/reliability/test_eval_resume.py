"""`probgen eval` resumes: killed (SIGKILL, Ctrl-C) or interrupted, the same command continues from the
batches it wrote and ends with the metrics of an uninterrupted run; --overwrite starts over."""

import json
import signal

import pytest

from probgen.cli import main
from probgen.pipelines import evaluate as evaluate_module
from probgen.pipelines.evaluate import partial_folder
from probgen.training.trainers.vae import fit_vae
from probgen.utils.partial import PartialStore
from tests.factories import tiny_vae_config
from tests.reliability.procs import Paused, start

pytestmark = pytest.mark.usefixtures("one_torch_thread")
_PUT = PartialStore.put


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vae")
    return fit_vae(tiny_vae_config(tmp / "run", max_steps=3))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, vae_run):
    """A cache holding the domain network (trained once for the module)."""
    path = tmp_path_factory.mktemp("cache")
    argv = ["eval", "--ckpt", str(vae_run), "--num-samples", "20", "--metrics", "fid", "--domain-steps", "5",
            "--bootstrap", "0", "--cache-dir", str(path), "--out", str(path / "w.json"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return path


def _argv(vae_run, cache, out, n=200, *extra):
    return ["eval", "--ckpt", str(vae_run), "--num-samples", str(n), "--feature-batch-size", "10",
            "--domain-steps", "5", "--bootstrap", "20", "--metrics", "fid,kid,precision,coverage", "--kid-subsets",
            "5", "--cache-dir", str(cache), "--out", str(out), "--no-progress", *extra]  # fmt: skip


def _metrics(path):
    return json.loads(path.read_text())["metrics"]


class _Interrupt:
    """Patches PartialStore.put to raise KeyboardInterrupt (Ctrl-C) after ``after`` batches are stored,
    and counts the batches that were computed (stored)."""

    def __init__(self, monkeypatch, after=None):
        self.after, self.puts = after, []

        def put(store, key, payload):
            _PUT(store, key, payload)
            self.puts.append(key)
            if self.after is not None and len(self.puts) >= self.after:
                raise KeyboardInterrupt

        monkeypatch.setattr(PartialStore, "put", put)


def test_interrupted_eval_continues_and_equals_an_uninterrupted_run(vae_run, cache, tmp_path, monkeypatch):
    reference = tmp_path / "reference.json"
    fresh_cache = tmp_path / "fresh-cache"  # real features not cached: their batches are resumable too
    fresh_cache.mkdir()
    (fresh_cache / "domain").symlink_to(cache / "domain")
    assert main(_argv(vae_run, cache, reference)) == 0
    out = tmp_path / "eval.json"
    first = _Interrupt(monkeypatch, after=12)  # 12 of the 20 real batches
    assert main(_argv(vae_run, fresh_cache, out)) == 130  # "probgen: interrupted"
    assert not out.exists() and len(PartialStore(partial_folder(out), {}).keys()) == 12
    second = _Interrupt(monkeypatch, after=13)  # the other 8 real batches, then 5 of 20 generated ones
    assert main(_argv(vae_run, fresh_cache, out)) == 130
    third = _Interrupt(monkeypatch)
    assert main(_argv(vae_run, fresh_cache, out)) == 0
    assert [len(r.puts) for r in (first, second, third)] == [12, 13, 15]  # no batch computed twice
    assert second.puts[7] == "real-000019" and second.puts[8] == "generated-000000"
    assert third.puts[0] == "generated-000005"
    assert _metrics(out) == _metrics(reference)  # bitwise: every number, intervals included
    assert not partial_folder(out).exists()  # removed once eval.json is whole


def test_overwrite_starts_over(vae_run, cache, tmp_path, monkeypatch):
    out = tmp_path / "eval.json"
    _Interrupt(monkeypatch, after=4)
    assert main(_argv(vae_run, cache, out)) == 130
    again = _Interrupt(monkeypatch)
    assert main(_argv(vae_run, cache, out, 200, "--overwrite")) == 0
    assert len(again.puts) == 20  # every generated batch computed again (the real features are cached)


def test_other_settings_are_refused_with_one_line(vae_run, cache, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval.json"
    _Interrupt(monkeypatch, after=2)
    assert main(_argv(vae_run, cache, out)) == 130
    capsys.readouterr()
    assert main(_argv(vae_run, cache, out, 300)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("probgen: error:")]
    assert len(err) == 1 and "other settings (eval)" in err[0] and "--overwrite" in err[0], err


def test_a_finished_eval_is_not_overwritten_silently(vae_run, cache, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(_argv(vae_run, cache, out, 40)) == 0
    capsys.readouterr()
    assert main(_argv(vae_run, cache, out, 40)) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow  # two process starts and two reference runs: ~1 min each on a shared 2-core machine
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_eval_process_resumes(vae_run, cache, tmp_path, sig):
    """A real process killed (SIGKILL) or interrupted (Ctrl-C) mid-run, then the same command again.

    The child stops once it has stored its third batch (tests/reliability/pause.py); the signal finds it there."""
    reference = tmp_path / "reference.json"
    assert main(_argv(vae_run, cache, reference, 600)) == 0
    out = tmp_path / "eval.json"
    argv = _argv(vae_run, cache, out, 600)
    child = Paused(argv, tmp_path, "generated-*.pt", 3, "after")  # stops once 3 batches are stored
    assert child.wait(), child.finish()[1]
    child.signal(sig)
    rc, err = child.finish()
    assert rc == (-9 if sig == signal.SIGKILL else 130), err
    folder = partial_folder(out)
    stored = len(list(folder.glob("generated-*.pt")))
    assert stored == 3 and not out.exists()
    proc = start(argv, tmp_path)
    _, err = proc.communicate()  # no time limit of its own: pytest's timeout stops a hang
    assert proc.returncode == 0, err
    assert _metrics(out) == _metrics(reference)
    assert not folder.exists()


def test_store_folder_sits_next_to_the_output(tmp_path):
    assert evaluate_module.partial_folder(tmp_path / "x" / "eval.json") == tmp_path / "x" / ".eval.json.partial"
