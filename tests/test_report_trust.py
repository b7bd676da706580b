"""The report half of "results you can trust": intervals, seed rows, like-with-like tables, significance,
collapse rates, cost axes, curves and old records."""

import json
import math
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from records_fixtures import correct, demo_record, saved_record
from test_report import sections

from robustode.cli import main
from robustode.errors import ConfigError
from robustode.records import Record, load_records
from robustode.report import group_records, render, write_report
from robustode.report.cost import COSTS, training_flops
from robustode.report.curves import training_curve
from robustode.report.plots import clean_vs_robust, robust_vs_cost
from robustode.stats import wilson

ROOT = Path(__file__).resolve().parent.parent


def only_table(md):
    (rows,) = sections(md).values()
    return rows


def column(md, header):
    """The cells of the column ``header`` in the only table of ``md``."""
    head = next(line for line in md.splitlines() if line.startswith("| Training method"))
    i = [c.strip() for c in head.strip("|").split("|")].index(header)
    return [row[i] for row in only_table(md)]


def test_intervals_round_outwards():
    from robustode.text import interval_text  # the report's cells print it without "%"

    assert interval_text(0.0, 0.000384, "") == "[0.0, 0.1]" and interval_text(0.4, 0.55, "") == "[40.0, 55.0]"
    assert interval_text(0.46061, 0.48018, "") == "[46.0, 48.1]"


def test_cells_show_the_records_own_intervals_and_name_the_method():
    custom = {"clean": [0.80, 0.90], "pgd-20": [0.40, 0.55]}  # not Wilson's: the report must read these
    md = render([demo_record(clean=0.85, pgd20=0.47, evaluation={"intervals": custom})], "md")
    assert column(md, "Clean") == ["85.00 [80.0, 90.0]"] and column(md, "PGD-20") == ["47.00 [40.0, 55.0]"]
    assert "95% Wilson interval" in md
    page = render([demo_record(evaluation={"intervals": custom, "interval_method": "clopper-pearson"})], "html")
    assert '47.00 <span class="ci">[40.0, 55.0]</span>' in page and "95% Clopper-Pearson interval" in page


def test_schema_1_records_render_with_intervals_from_n(tmp_path):
    old = demo_record(clean=0.348, pgd20=0.268, n=500).to_dict()
    old["schema_version"] = 1
    for section, fields in (("defense", ("single_step",)),
                            ("training", ("stop_kind", "curve", "best_epoch", "world_size",
                                          "peak_memory_bytes", "flops_per_image")),
                            ("evaluation", ("worst_case_acc", "intervals", "interval_method", "per_example",
                                            "randomized", "escalation"))):
        for name in fields:
            del old[section][name]
    (tmp_path / "old.json").write_text(json.dumps(old))
    md = write_report(tmp_path, "md")
    (cell,) = column(md, "PGD-20")
    value, shown_low, shown_high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
    low, high = wilson(134, 500)  # computed by the loader from n and the accuracy
    assert value == 26.80 and 0 <= 100 * low - shown_low < 0.1 and 0 <= shown_high - 100 * high < 0.1
    assert "no paired comparison" in md and "vs best" not in md
    page = write_report(tmp_path, "html")
    assert "have no per-epoch curve" in page and "Training curves" not in page


def test_committed_records_render_every_format():
    records = load_records(ROOT / "leaderboard" / "records")
    md = render(records, "md")
    tables = sections(md)
    assert len(tables) == len(group_records(records)) >= 2  # unlike runs (the demo's budget) apart
    names = {(r.model.name, r.defense.spec + (f" ({r.label})" if r.label else "")) for r in records}
    assert sorted(row[0] for rows in tables.values() for row in rows) == sorted(n for _, n in names)  # seeds share
    for rows in tables.values():
        for row in rows:
            seeded = row[6].endswith("runs)")
            pattern = r"\d+\.\d\d ± \d+\.\d\d" if seeded else r"\d+\.\d\d \[\d+\.\d, \d+\.\d\]"
            assert re.fullmatch(pattern, row[2]), row
    page = render(records, "html", cost="flops")  # every run counted its FLOPs: all on the cost plot
    assert "Left out of the training FLOPs" not in page and 'alt="Clean vs robust' in page
    assert len(json.loads(render(records, "json"))) == len(records)


def test_runs_differing_only_by_seed_share_a_row():
    runs = [demo_record(seed=s, pgd20=p, clean=c, date=f"2025-01-0{s + 1}T00:00:00+00:00", commit=commit)
            for s, p, c, commit in ((2, 0.47, 0.80, "1234567890+dirty"), (0, 0.40, 0.82, "abcdef0123"),
                                    (1, 0.42, 0.81, "abcdef0123"))]
    other_lr = demo_record(seed=0, pgd20=0.30, lr=0.05)  # another experiment: its own row
    md = render(runs + [other_lr], "md")
    rows = only_table(md)
    assert len(rows) == 2
    pgd = [0.40, 0.42, 0.47]
    mean, std = 100 * statistics.fmean(pgd), 100 * statistics.stdev(pgd)
    assert rows[0][2] == f"{mean:.2f} ± {std:.2f}" and "±" not in rows[1][2]
    assert column(md, "Seeds") == ["0, 1, 2 (3 runs)", "0"]
    assert column(md, "Date") == ["2025-01-01 – 03", "2025-01-02"]
    assert column(md, "Code") == ["abcdef0, 1234567+dirty", "abc123"]
    page = render(runs + [other_lr], "html")
    assert "seed 0: 40.00 [" in page and "seed 2: 47.00 [" in page  # each seed's value on hover


def test_a_rows_spread_is_mean_and_std_over_its_seeds():
    rows = group_records([demo_record(seed=s, pgd20=p) for s, p in ((0, 0.40), (1, 0.42), (2, 0.47))])[0].rows
    pgd20 = lambda r: r.evaluation.pgd20_acc  # noqa: E731
    mean, std = rows[0].spread(pgd20, 0.01)
    assert mean == pytest.approx(43.0) and std == pytest.approx(100 * statistics.stdev([0.40, 0.42, 0.47]))
    one = group_records([demo_record(seed=0, pgd20=0.40)])[0].rows[0]
    assert one.spread(pgd20) == (0.40, 0.0) and one.spread(lambda r: None) is None


@pytest.mark.parametrize("change", [{"label": "other"}, {"device": "NVIDIA A100"}, {"epochs": 50},
                                    {"evaluation": {"attack_settings": {"pgd-20": {"steps": 50}}}}])
def test_another_setting_is_another_row(change):
    rows = group_records([demo_record(seed=0), demo_record(seed=1, **change)])[0].rows
    assert len(rows) == 2


def test_unlike_runs_go_to_separate_tables():
    runs = [demo_record(), demo_record(n_train=4_000), demo_record(n=500), demo_record(eps=4 / 255),
            demo_record(model="resnet20"), demo_record(kind="custom")]
    groups = group_records(runs)
    assert len(groups) == len(runs) and all(len(g.rows) == 1 for g in groups)
    titles = [g.title for g in groups]
    assert len(set(titles)) == len(runs)
    assert any("4,000 training images" in t for t in titles) and any("n = 500" in t for t in titles)
    assert any("eps 4/255" in t for t in titles) and any("resnet20" in t for t in titles)


def fgsm_seeds():
    """Three FGSM-RS seeds: one stopped by its guard at epoch 6, one collapsed to 1% PGD-20, one fine."""
    guard = {"stop_kind": "guard", "stopped_early": "PGD-5 on the first batch fell 40 points"}
    return [demo_record(defense="fgsm-rs", seed=0, pgd20=0.41, epochs=15),
            demo_record(defense="fgsm-rs", seed=1, pgd20=0.38, epochs=6, training=guard),
            demo_record(defense="fgsm-rs", seed=2, pgd20=0.01, epochs=15)]


def test_single_step_collapse_rate():
    md = render(fgsm_seeds() + [demo_record(defense="pgd-10", epochs=15)], "md")
    assert column(md, "Training method") == ["pgd-10", "fgsm-rs"]
    assert column(md, "Collapsed") == ["", "2/3"]  # the guard fired once, one seed fell below 2%
    assert column(md, "Epochs") == ["15", "6, 15"]  # the stopped run joined its seeds' row
    assert "overfitting guard fired, or PGD-20 ended below 2%" in md
    md = render([demo_record(defense="pgd-10")], "md")
    assert "Collapsed" not in md  # no single-step defense: no column


def test_single_step_comes_from_the_record_alone():
    """What the record says, for a defense no registry here knows, and against a registered class's."""
    md = render([demo_record(defense="one-step-elsewhere", single_step=True, pgd20=0.0),
                 demo_record(defense="n-fgsm"), demo_record(defense="grad-align(lam=0.1)")], "md")
    assert column(md, "Collapsed") == ["0/1", "0/1", "1/1"]
    md = render([demo_record(defense="fgsm-rs", single_step=False), demo_record(defense="pgd-10")], "md")
    assert "Collapsed" not in md


def mcnemar(b, c):
    """The two-sided exact McNemar p-value, written out: min(b, c) is binomial(b + c, 1/2)."""
    return min(1.0, 2 * sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c))


def test_significance_marks_on_known_pairs(tmp_path):
    n, clean = 200, correct(200, 200)
    base = correct(n, 100)  # the best row: points 0..99 robust
    # 10 points only the best gets right (p = 2 / 2^10), and 5 against 2 (p = 0.453125): known answers.
    far = correct(n, 90)
    near = correct(n, 97) | correct(n, 2, start=150)
    near[95:97] = False
    assert (int((base & ~far).sum()), int((far & ~base).sum())) == (10, 0)
    assert (int((base & ~near).sum()), int((near & ~base).sum())) == (5, 2)
    records = [saved_record(tmp_path, clean, base, defense="pgd-10"),
               saved_record(tmp_path, clean, far, defense="free-8"),
               saved_record(tmp_path, clean, near, defense="yopo-5-3"),
               demo_record(defense="pgd-3", pgd20=0.40, n=n, clean=1.0)]  # no per-example file
    rows = group_records(records)[0].rows
    assert [row.first.defense.spec for row in rows] == ["pgd-10", "yopo-5-3", "free-8", "pgd-3"]
    assert [row.p_value for row in rows] == [None, mcnemar(5, 2), mcnemar(10, 0), None]
    assert mcnemar(10, 0) == 2 / 2**10 and mcnemar(5, 2) == 0.453125
    md = render(records, "md")
    assert column(md, "vs best (p)") == ["best", "0.45", "0.002 *", "—"]
    assert "exact McNemar" in md


def test_several_seeds_are_compared_seed_by_seed(tmp_path):
    n, clean = 100, correct(100, 100)
    best = [saved_record(tmp_path, clean, correct(n, 60), seed=s) for s in (0, 1)]
    # Seed 0 differs on 12 points (significant), seed 1 on 3 (not): the row shows the larger p.
    other = [saved_record(tmp_path, clean, correct(n, 48), seed=0, defense="free-8"),
             saved_record(tmp_path, clean, correct(n, 57), seed=1, defense="free-8")]
    rows = group_records(best + other)[0].rows
    assert rows[1].p_value == max(mcnemar(12, 0), mcnemar(3, 0)) == mcnemar(3, 0)


def cost_runs():
    curve = [{"epoch": e, "nominal_epoch": e, "lr": 0.1, "loss": 1.0, "train_acc": 0.5, "eval_clean": None,
              "eval_robust": None} for e in (1, 2, 3, 4)]
    return [demo_record(defense="pgd-10", seconds=100.0, n_train=1000,
                        training={"curve": curve, "flops_per_image": 5e9, "world_size": 4,
                                  "peak_memory_bytes": 3 * 2**30}),
            demo_record(defense="free-8", seconds=50.0, n_train=1000)]


def test_flops_are_per_image_step_times_images_seen():
    counted, plain = cost_runs()
    assert training_flops(counted) == 5e9 * 4 * 1000 and training_flops(plain) is None
    assert COSTS["gpu-seconds"].value(counted) == 400.0 and COSTS["passes"].value(counted) == 11.0
    page = render(cost_runs(), "html", cost="flops")
    assert "Left out of the training FLOPs (counted) plot: free-8 (no counted FLOPs" in page
    assert "<th>Training FLOPs (TFLOP)</th>" in page and ">20.0</td>" in page
    assert "<th>Peak memory (GiB)</th>" in page and ">3.00</td>" in page
    svg = robust_vs_cost(group_records(cost_runs())[0].rows, COSTS["flops"]).svg
    assert "training FLOPs (counted) (TFLOP)" in svg and "free-8" not in svg
    with pytest.raises(ConfigError, match="unknown cost 'joules'"):
        render([], "html", cost="joules")


def texts(svg):
    return re.findall(r"<text [^>]*>([^<]*)</text>", svg)


def test_plots_start_at_zero_keep_the_legend_outside_and_label_log_axes():
    runs = [demo_record(defense="pgd-10", pgd20=0.44, clean=0.72, seconds=90_000),
            demo_record(defense="fgsm-rs", pgd20=0.42, clean=0.76, seconds=30)]
    rows = group_records(runs)[0].rows
    assert "0" in texts(clean_vs_robust(rows))  # the y axis starts at 0, not at 42
    svg = robust_vs_cost(rows).svg
    assert "training time (min), log scale" in texts(svg)
    ticks = [t for t in texts(svg) if re.fullmatch(r"[\d.,]+", t)]
    assert "1,000" in ticks and not any("^" in t or "$" in t for t in texts(svg))  # plain numbers
    tree = ET.fromstring(svg)
    axes = tree.find(".//*[@id='axes_1']")
    assert tree.find(".//*[@id='legend_1']") is not None and axes.find(".//*[@id='legend_1']") is None


def curve_record(held_out=True):
    rows = [{"epoch": e, "nominal_epoch": e, "lr": 0.1 if e < 4 else 0.01, "loss": 1.0, "train_acc": 0.3 + e / 20,
             "eval_clean": (0.5 + e / 50 if held_out and e % 2 == 0 else None),
             "eval_robust": (0.2 + e / 100 if held_out and e % 2 == 0 else None)} for e in range(1, 7)]
    return demo_record(training={"curve": rows, "best_epoch": 4 if held_out else None})


def test_training_curves_per_run_with_the_best_epoch():
    svg = training_curve(curve_record())
    assert {"held-out clean", "held-out robust", "training accuracy", "best checkpoint (epoch 4)",
            "learning rate"} <= set(texts(svg))
    bare = texts(training_curve(curve_record(held_out=False)))
    assert "training accuracy" in bare and "held-out robust" not in bare
    assert training_curve(demo_record()) is None
    page = render([curve_record(), demo_record(seed=1)], "html")
    assert "<h3>Training curves</h3>" in page and "1 of 2 runs have no per-epoch curve" in page
    assert page.count('src="data:image/svg+xml;base64,') == 3  # two plots and one curve
    assert render([curve_record()], "html") == render([curve_record()], "html")  # deterministic


def test_cli_leaderboard_cost(tmp_path, capsys):
    from robustode.records import save_in

    for r in cost_runs():
        save_in(r, tmp_path)
    assert main(["leaderboard", "--records", str(tmp_path), "--format", "html", "--cost", "gpu-seconds"]) == 0
    assert "Robust accuracy vs GPU time" in capsys.readouterr().out


def test_json_keeps_every_schema_2_field():
    record = curve_record()
    (back,) = [Record.from_dict(d) for d in json.loads(render([record], "json"))]
    assert back == record and back.training.curve == record.training.curve


def test_worst_case_column_only_over_several_attacks():
    several = demo_record(aa=0.44, evaluation={"worst_case_acc": 0.43})
    md = render([several], "md")
    assert column(md, "Worst case")[0].startswith("43.00 [")
    assert "Worst case" not in render([demo_record(evaluation={"worst_case_acc": 0.47})], "md")


def test_a_missing_per_example_file_is_an_error_naming_it(tmp_path):
    from robustode.errors import RecordError

    n = 50
    saved_record(tmp_path, correct(n, n), correct(n, 30))
    saved_record(tmp_path, correct(n, n), correct(n, 20), defense="free-8")
    (victim,) = [p for p in tmp_path.glob("points-*.npz")][:1]
    victim.unlink()
    with pytest.raises(RecordError, match=victim.name):
        write_report(tmp_path, "md")
