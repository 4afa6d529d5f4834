"""Every number a page quotes agrees with its source: the README, the pages and the READMEs of bench/ and studies/
are checked against the recorded files they quote (the JSON in bench/results/ and symmetries/results/) and against
the constants of the package. A page that retypes a number, or a recorded file that changes without the page, fails.
"""
import json, re, sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
README = (ROOT / "README.md").read_text()
BENCH = ROOT / "bench" / "results"


def notebook_text(stem, outputs=True):
    "The sources (and the saved text and markdown outputs) of nbs/`stem`.ipynb, one string."
    nb = json.loads((ROOT / "nbs" / f"{stem}.ipynb").read_text())
    parts = []
    for c in nb["cells"]:
        parts.append("".join(c["source"]))
        for o in c.get("outputs", []) if outputs else ():
            parts.append("".join(o.get("text", "")))
            parts += ["".join(o.get("data", {}).get(k, "")) for k in ("text/markdown", "text/plain")]
    return "\n".join(parts)


def test_readme_is_built_from_the_index_notebook():
    import build_docs
    assert README == build_docs.build_readme(ROOT / "nbs"), \
        "README.md is stale: run python scripts/build_docs.py --readme"


def test_readme_expectations_are_read_from_the_recorded_runs():
    # the table is what fast_expectations_markdown makes of the recorded files now: a file that changed without the
    # README (or a README edited by hand) fails here
    from symmetries.experiments import fast_expectations, fast_expectations_markdown
    fresh = fast_expectations_markdown(ROOT)
    assert fresh in README, "README.md's expectations differ from the recorded runs: re-run nbs/index.ipynb, then " \
                            "python scripts/build_docs.py --readme\n" + fresh
    e = fast_expectations(ROOT)
    rec = json.loads((BENCH / "reproduce_fast_results.json").read_text())
    assert rec["budget"] == "fast" and len(rec["seeds"]) >= 2
    for path, s in rec["over_seeds"]["msr_synthetic"].items():
        lo, hi = e["msr_synthetic"]["ranges"][path]
        assert (lo, hi) == (min(s["values"]), max(s["values"])), path
        name = {"maml_fc": "MAML-FC", "maml_lc": "MAML-LC", "maml_conv": "MAML-Conv",
                "msr_fc": "MSR-FC"}[path.split(".")[1]]
        assert f"{name} {lo:.3f}–{hi:.3f}" in README, (path, lo, hi)
    from symmetries.ws_mnist import CONFIGS
    fast = {k: v for k, v in CONFIGS["fast"].items() if k != "label"}
    study = json.loads((ROOT / "symmetries" / "results" / "ws_discovery.json").read_text())
    for model, (lo, hi) in e["rotated_digits"]["ranges"].items():
        accs = [r["accuracy"] for r in study["runs"] if r["model"] == model and r["variant"] == "rotated"
                and r["config"] == fast]
        assert (lo, hi) == (min(accs), max(accs)), model
        assert f"{model.upper()} {100 * lo:.1f}–{100 * hi:.1f} %" in README, model


def test_main_job_durations_have_one_source():
    from symmetries.experiments import CPU_SECONDS, CPU_SECONDS_SOURCE, format_duration
    for budget in ("tiny", "fast"):
        rec = json.loads((BENCH / f"reproduce_{budget}.json").read_text())
        assert CPU_SECONDS[budget] == {n: round(s) for n, s in rec["seconds"].items()}, budget
        assert rec["command"] in CPU_SECONDS_SOURCE[budget] and rec["date"] in CPU_SECONDS_SOURCE[budget]
    total = format_duration(sum(CPU_SECONDS["fast"].values()))
    assert f"takes about {total} after the set-up" in README
    # no page states the main job's total time in words of its own
    for stem in ("index", "40_experiments", "41_report", "42_reproduce"):
        text = notebook_text(stem, outputs=False)
        assert not re.search(r"about (two|three|four|five) minutes|\(about three\)|\d+ min \d+ s in all", text), stem


def test_authors_code_reference_has_one_wording():
    from symmetries.experiments import reference_numbers
    from symmetries.msr_synthetic import AUTHORS_CODE_SOURCE
    assert reference_numbers()["msr_synthetic"]["source"] == AUTHORS_CODE_SOURCE
    for stem in ("20_msr_synthetic", "40_experiments", "41_report", "42_reproduce"):
        assert "machine class" not in notebook_text(stem), f"{stem} describes the reference runs in its own words"


def test_rotated_digits_reference_rows():
    from symmetries.experiments import reference_numbers
    from symmetries.ws_mnist import PAPER_RESULTS
    ref = reference_numbers()["rotated_digits"]
    assert "wscnn" not in ref            # the paper's WSCNN + norm is not the variant the main job trains
    for m in ("cnn", "gcnn", "wscnn+norm"): assert ref[m] == pytest.approx(PAPER_RESULTS["rotated"][m] / 100)


def test_bench_readme_says_how_the_committed_files_were_measured():
    text = (ROOT / "bench" / "README.md").read_text()
    layers = json.loads((BENCH / "layers.json").read_text())
    timed = [v["ours"] for v in layers.values() if isinstance(v, dict) and isinstance(v.get("ours"), dict)]
    meta, rounds = layers["meta"], {len(t["times_s"]) for t in timed if "times_s" in t}
    bullet = lambda start: re.search(rf"^{re.escape(start)}.*?(?=\n- |\n\n)", text, re.S | re.M).group(0)
    line = bullet("- `layers.json`")
    assert f"--threads {meta['threads']}" in line and f"--clock {meta['clock']}" in line, line
    assert rounds == {11} and "11 rounds" in line, (rounds, line)
    assert ("--authors" in line) == meta["authors"], line
    long = json.loads((BENCH / "layers_long.json").read_text())
    line = bullet("- `layers_long.json`")
    assert long["meta"]["threads"] == 1 and long["meta"]["clock"] == "cpu" and "25" in line, line
    # every script the README names exists where it says
    for script in re.findall(r"(?:bench|studies)/\w+\.py", text): assert (ROOT / script).exists(), script
    assert "authors_code_tasks_per_s" not in (BENCH / "meta.json").read_text()


def test_studies_readme_seeds_match_the_recorded_study():
    text = (ROOT / "studies" / "README.md").read_text()
    study = json.loads((ROOT / "symmetries" / "results" / "ws_discovery.json").read_text())
    seeds = lambda model: sorted({r["seed"] for r in study["runs"]
                                  if r["model"] == model and r["variant"] == "rotated"})
    assert seeds("cnn") == seeds("gcnn") == seeds("wscnn") == [0, 1, 2, 3, 4]
    assert seeds("wscnn (identity start)") == seeds("wscnn (paper init)") == [0, 1, 2]
    assert "started from the discovered symmetry over seeds 0-4" in text and "paper's flat start over seeds 0-2" in text
    for script in re.findall(r"`(\w+\.py)`", text): assert (ROOT / "studies" / script).exists(), script
