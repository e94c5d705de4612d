"""`probgen report`: the page of a run, a sweep and an experiment folder, parsed as HTML.

Every section the folder's files support is present, every image decodes, and nothing on the page
points outside it (links to sibling run reports of a sweep excepted).
"""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from probgen.cli import main
from probgen.inference.loglik.result import LoglikResult
from probgen.pipelines.loglik_results import csv_rows
from probgen.pipelines.report_experiment import ORDER
from probgen.pipelines.report_run import curve_panels
from probgen.utils.io import write_csv, write_json
from tests.factories import SMALL_FIT_VAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[2]


class _Page(HTMLParser):
    """The parts of a report page the tests look at."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value) of every src/href
        self.warnings: list[str] = []
        self._warn = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        if tag == "img":
            self.images.append(a["src"])
        self.refs += [(tag, k, v) for k, v in attrs if k in ("src", "href", "action", "data")]
        self._warn = tag == "p" and a.get("class") == "warn"

    def handle_data(self, data):
        if self._warn:
            self.warnings.append(data)
            self._warn = False


def parse(path: Path, links_ok: tuple[str, ...] = ()) -> _Page:
    """The page at ``path``, checked: images decode, no reference leaves the page but ``links_ok``."""
    page = _Page(path.read_text())
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))) as im:
            im.load()
            assert im.size[0] > 0 and im.size[1] > 0
    for tag, attr, value in page.refs:
        if value.startswith(("data:", "#")):
            continue
        assert tag == "a" and attr == "href" and value in links_ok, (tag, attr, value)
    assert "<link" not in path.read_text() and "@import" not in path.read_text()
    return page


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real 16 px VAE run (1 epoch) with its manifold plot, plus loglik and eval files in their formats."""
    root = tmp_path_factory.mktemp("report")
    out = root / "run"
    argv = ["fit", *SMALL_FIT_VAE, "--epochs", "2", "--sample-epochs", "1,2", "--data-root", str(root / "none")]
    assert main([*argv, "--out", str(out)]) == 0
    assert main(["plot", "manifold", "--ckpt", str(out), "--grid", "4", "--data-root", str(root / "none")]) == 0
    ll = out / "loglik"
    ll.mkdir()
    flags = [[], ["rhat"], ["rhat", "missed-mode"], []]
    res = {
        "iwae": LoglikResult("iwae", torch.tensor([-80.0, -90.0, -85.0, -70.0], dtype=torch.float64), 256, {"k": 200}),
        "appendix-d": LoglikResult(
            "appendix-d",
            torch.tensor([-79.0, -95.0, -84.0, -69.0], dtype=torch.float64),
            256,
            {},
            torch.full((4,), 0.1, dtype=torch.float64),
            flags,
        ),  # fmt: skip
    }
    fig = Image.new("RGB", (40, 30), (200, 10, 10))
    fig.save(ll / "trace_dp2.png")
    split_mean = {
        "log_px": -81.2,
        "ci95": [-82.1, -80.3],
        "bits_per_dim": 0.0458,
        "ci95_bits_per_dim": [0.0453, 0.0463],
        "n_cheap": 4,
        "n_deep": 4,
        "population": 30,
        "cheap_estimator": "iwae (k=200)",
        "flagged_by_reason": {"appendix-d": {"rhat": 2, "missed-mode": 1}, "ais-laplace": {}},
        "n_deep_untrusted": 1,
        "flagged_widening": 0.25,
    }  # the default run's keys (loglik_default)
    write_json(ll / "loglik.json", {"dataset": "dsprites", "split": "test", "num_data": 4, "units": "nats per image",
               "split_mean": split_mean,
               "results": {m: r.to_dict() for m, r in res.items()}, "plots": ["trace_dp2.png"],
               "warnings": ["1 of 4 data points failed the chain diagnostics"],
               "environment": {"torch": torch.__version__, "device": "cpu"}})  # fmt: skip
    write_csv(ll / "loglik.csv", csv_rows(res, 4, labels=[3, 5, 8, 13]))
    common = {"num_generated": 64, "num_real": 30, "ref_split": "test", "feature_network": "dsprites-domain",
              "resize": "none"}  # fmt: skip
    write_json(out / "eval.json", {"dataset": "dsprites", "kind": "vae", "step": 18, "metrics": {
        "FD-dsprites": {"value": 12.5, "ci95": [10.0, 15.0], **common},
        "KD-dsprites": {"mean": 0.01, "std": 0.002, "subsets": 10, "subset_size": 30, **common}},
        "environment": {"torch": torch.__version__, "device": "cpu"}})  # fmt: skip
    return out


def test_run_report_has_every_section_and_embeds_every_image(run, capsys):
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    page = parse(run / "report.html")
    for section in ("overview", "config", "curves", "samples", "reconstructions", "latents", "loglik-loglik",
                    "eval-eval", "environment"):  # fmt: skip
        assert section in page.sections, section
    assert "problems" not in page.sections
    # samples at epochs 1 and 2 (samples.png is epoch 2's), reconstructions, manifold, curves, trace
    assert len(page.images) == 6
    text = (run / "report.html").read_text()
    for expected in ("12.5", "10 to 15", "dsprites-domain", "rhat", "missed-mode", "1 of 4 data points",
                     "-81.75 ± ", "N generated", "model.latent_dim"):  # fmt: skip
        assert expected in text, expected
    # the default run's answer: the split mean with its 95% interval, in nats and bits/dim
    for expected in ("-81.2", "-82.1 to -80.3", "0.0453 to 0.0463", "deep points flagged by appendix-d: rhat"):
        assert expected in text, expected
    # the flags by reason are the file's own counts: rhat 2, missed-mode 1
    assert re.search(r"<td>appendix-d</td><td>rhat</td><td class=\"num\">2</td>", text)


def test_run_report_leaves_out_missing_parts_and_names_corrupt_files(run, tmp_path, caplog):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoint.pt", "report*"))
    shutil.rmtree(copy / "loglik")
    (copy / "eval.json").write_text('{"metrics": ')  # truncated
    (copy / "reconstructions.png").write_bytes(b"not a png")
    assert main(["report", str(copy), "--format", "md"]) == 0
    page = parse(copy / "report.html")
    assert not any(s.startswith("loglik") or s.startswith("eval") for s in page.sections)
    assert "reconstructions" not in page.sections
    assert any("eval.json: not valid JSON" in w for w in page.warnings)
    assert any("reconstructions.png: not a readable image" in w for w in page.warnings)
    assert sum("eval.json" in r.message for r in caplog.records if r.levelname == "WARNING") == 1
    md = (copy / "report.md").read_text()
    for name in re.findall(r"\]\((report_files/[^)]+)\)", md):
        Image.open(copy / name).load()
    assert "## Training curves" in md and "report_files/curves.png" in md


def test_curve_panels_of_a_vae_and_of_a_gan():
    vae = [{"epoch": str(e), "step": str(8 * e), "split": s, "beta": "1", "loss": str(l), "elbo": str(-l),
            "recon": str(-l + 1), "kl": "1", "neg_elbo_bits_per_dim": "0.9"}
           for e, l in ((1, 10.0), (2, 8.0)) for s in ("train", "test")]  # fmt: skip
    series, xs, xlabel = curve_panels(vae)
    assert xlabel == "epoch" and xs == {"train": [1.0, 2.0], "test": [1.0, 2.0]}
    # the objective equals -ELBO here (beta 1): one total panel, reconstruction and KL
    assert list(series) == ["-ELBO (nats per image)", "reconstruction log-lik (nats per image)", "KL (nats per image)"]
    assert series["-ELBO (nats per image)"]["test"] == [10.0, 8.0]
    scaled = [{**r, "loss": str(float(r["loss"]) - 0.5)} for r in vae]  # beta 0.5: the objective differs
    assert "loss: the objective (nats per image)" in curve_panels(scaled)[0]
    gan = [{"step": str(i), "epoch": "1", "loss_d": "1.3", "loss_g": "0.7", "d_real": "0.6", "d_fake": "0.4"}
           for i in (1, 2, 3)]  # fmt: skip
    series, xs, xlabel = curve_panels(gan)
    assert xlabel == "step" and series == {
        "loss": {"D": [1.3] * 3, "G": [0.7] * 3},
        "discriminator output": {"D(x)": [0.6] * 3, "D(G(z))": [0.4] * 3},
    }


@pytest.mark.parametrize("bad", ["missing", "file", "empty"])
def test_a_bad_path_is_one_line_and_a_non_zero_exit(tmp_path, capsys, bad):
    path = tmp_path / "x"
    if bad == "file":
        path.write_text("")
    elif bad == "empty":
        path.mkdir()
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probgen: error: PATH: ") and err.count("\n") == 1


def test_sweep_report_links_each_run_report(run, tmp_path):
    sweep = tmp_path / "sweep"
    names = ["beta=0.5", "beta=1"]
    for name in names:
        shutil.copytree(run, sweep / name, ignore=shutil.ignore_patterns("checkpoint.pt", "report*", "loglik"))
    write_json(sweep / "sweep.json", {"kind": "vae", "grid": {"beta": [0.5, 1.0]}, "base": {}})
    write_csv(sweep / "sweep.csv", [{"run": n, "beta": n[5:], "status": "done", "test_elbo": -v}
                                    for n, v in zip(names, (80.5, 70.25))])  # fmt: skip
    (sweep / "sweep.md").write_text("| run |\n|---|\n\nELBO terms are per-image averages in nats.\n")
    assert main(["report", str(sweep)]) == 0
    links = tuple(f"{n}/report.html" for n in names)
    page = parse(sweep / "report.html", links_ok=links)
    assert {"table", "curves", "samples"} <= set(page.sections)
    assert {v for t, a, v in page.refs if t == "a" and not v.startswith("#")} == set(links)
    assert len(page.images) == 3  # the combined curves and one thumbnail per run
    text = (sweep / "report.html").read_text()
    assert 'class="sortable"' in text and "-70.25" in text and "beta=0.5" in text and "per-image averages" in text
    for link in links:
        assert "samples" in parse(sweep / link).sections


def test_every_experiment_order_follows_its_docs_page():
    for name, order in ORDER.items():
        text = (ROOT / "docs" / "experiments" / f"{name}.md").read_text()
        places = []
        for entry in order:
            stem = entry.removeprefix("run:").replace("*", "")
            found = [text.index(s) for s in (stem, stem.replace(".csv", ".md")) if s in text]
            assert found, (name, entry)  # a table is named as its .csv, .csv/.md or .md
            places.append(min(found))
        run_level = [p for e, p in zip(order, places) if e.startswith("run:")]
        top = [p for e, p in zip(order, places) if not e.startswith("run:")]
        assert run_level == sorted(run_level), (name, order)
        assert top == sorted(top), (name, order)


def test_experiment_report_shows_tables_figures_and_runs(run, tmp_path):
    exp = tmp_path / "r2"
    shutil.copytree(run, exp / "vae", ignore=shutil.ignore_patterns("checkpoint.pt", "report*", "loglik"))
    write_json(exp / "summary.json", {"experiment": "r2_chest_xray_4layer", "mode": "smoke", "seconds": 3.5})
    write_csv(exp / "results.csv", [{"run": "vae", "FD": 1.5, "N": 64}])
    shutil.copy(run / "loss_curves.png", exp / "combined_loss.png")
    assert main(["report", str(exp)]) == 0
    page = parse(exp / "report.html", links_ok=("vae/report.html",))
    assert {"summary", "results", "runs"} <= set(page.sections)
    text = (exp / "report.html").read_text()
    assert text.index("combined_loss.png") < text.index("results.csv")  # the docs page's order
    assert (exp / "vae" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_the_page_renders_in_headless_chromium(run, tmp_path):
    assert main(["report", str(run)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,2000", (run / "report.html").as_uri()],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    with Image.open(shot) as im:
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        assert hi - lo > 100  # text and figures on a white page, not a blank or an error page
        dark = sum(grey.histogram()[:128]) / (grey.size[0] * grey.size[1])
        assert 0.002 < dark < 0.6
