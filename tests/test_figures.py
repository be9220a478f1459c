"""The report's figures and tables (trainer/figures): what each marks, selects and refuses."""
import json

import cv2
import h5py
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import lists_digest, read_protocol, read_split
from trainer.evaluation import evaluate, good_junk_masks
from trainer.figures import curves, tables
from trainer.figures.__main__ import main as figures_main
from trainer.figures.cmc import plot_cmc
from trainer.figures.embedding import embedding_points, plot_embedding
from trainer.figures.ranklist import GOOD, QUERY, WRONG, rank_list, rank_rows


def _labels(rng, n, ids, cams, clothes):
    return rng.integers(0, ids, n), rng.integers(0, cams, n), rng.integers(0, clothes, n)


@pytest.mark.parametrize("mode", ["CC", "general", "SC"])
def test_rank_rows_mark_by_the_protocol_and_agree_with_the_metric(mode):
    rng = np.random.default_rng(0)
    q_pid, q_cam, q_clo = _labels(rng, 40, 6, 3, 2)
    g_pid, g_cam, g_clo = _labels(rng, 90, 6, 3, 2)
    dist = rng.random((40, 90))  # no ties
    good, junk = good_junk_masks(q_pid, q_cam, q_clo, (g_pid, g_cam, g_clo), mode)
    assert junk.any() and good.any()
    rows = rank_rows(dist, good, junk, queries=40, top=90)
    valid = np.flatnonzero(good.any(1))
    assert sorted(r["query"] for r in rows) == sorted(valid.tolist())  # all of them when asked for all
    assert [r["first_true"] for r in rows] == sorted(r["first_true"] for r in rows)  # best first
    firsts = np.array([r["first_true"] for r in rows])
    result = evaluate(dist, q_pid, g_pid, q_cam, g_cam, q_clo, g_clo, mode=mode)
    for k in (1, 5, 10):  # the picture's "first true" is the rank the CMC counts
        assert np.mean(firsts <= k) == pytest.approx(result["cmc"][k - 1])
    for r in rows:
        i, kept = r["query"], 0
        assert [j for j, _, _ in r["tiles"]] == np.argsort(dist[i]).tolist()
        for j, mark, rank in r["tiles"]:
            assert mark == ("junk" if junk[i, j] else "good" if good[i, j] else "wrong")
            if mark == "junk":
                assert rank is None
            else:
                kept += 1
                assert rank == kept  # junk takes no rank
        if mode == "CC":  # same person in the same clothes is never a true match of a clothes-changing query
            assert all(not (g_pid[j] == q_pid[i] and g_clo[j] == q_clo[i]) or mark == "junk"
                       for j, mark, _ in r["tiles"])


def test_rank_rows_pick_queries_from_best_to_worst():
    rng = np.random.default_rng(1)
    q_pid, q_cam, q_clo = _labels(rng, 30, 5, 2, 2)
    g_pid, g_cam, g_clo = _labels(rng, 60, 5, 2, 2)
    dist = rng.random((30, 60))
    good, junk = good_junk_masks(q_pid, q_cam, q_clo, (g_pid, g_cam, g_clo), "general")
    everyone = rank_rows(dist, good, junk, queries=1000, top=3)
    picked = rank_rows(dist, good, junk, queries=3, top=3)
    assert len(picked) == 3 and all(len(r["tiles"]) == 3 for r in picked)
    assert picked[0]["first_true"] == everyone[0]["first_true"]  # the best
    assert picked[-1]["first_true"] == everyone[-1]["first_true"]  # and the worst
    with pytest.raises(InputError, match="no query has a good match"):
        rank_rows(dist, np.zeros_like(good), junk, 3, 3)


def write_features(path, lists, pack: ImagePack, splits, seed=0, manifest=None):
    """features.h5 in trainer.evaluate's layout, with random features."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for split in splits:
            samples = read_split(lists, split)
            g = f.create_group(split)
            g["features"] = rng.normal(size=(len(samples), 8)).astype(np.float32)
            g["pid"] = [s.pid for s in samples]
            g["camid"] = [s.camid for s in samples]
            g["clothes_id"] = [s.clothes_id for s in samples]
            g.create_dataset("path", data=[s.path for s in samples], dtype=h5py.string_dtype())
            g["pack_index"] = pack.indices([s.path for s in samples])
        f.attrs["manifest_sha256"] = manifest or pack.manifest_sha256
        f.attrs["lists_sha256"] = lists_digest(lists)
    return path


def _colour_pixels(png, hex_colour):
    img = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img.astype(int) - rgb).sum(-1) <= 6).sum())


def test_rank_list_draws_the_cc_protocol_from_features_h5(tiny_dataset, tmp_path):
    pack = ImagePack(tiny_dataset["images"])
    feats = write_features(tmp_path / "features.h5", tiny_dataset["lists"], pack, ["query_diff", "gallery"])
    out = rank_list(feats, tiny_dataset["images"], tiny_dataset["lists"], tmp_path / "r.png", None, 3, 5)
    for colour in (QUERY, GOOD, WRONG):  # frames of every kind are drawn
        assert _colour_pixels(out, colour) > 50, colour
    with pytest.raises(InputError, match="SC_single_shot|has"):
        rank_list(feats, tiny_dataset["images"], tiny_dataset["lists"], tmp_path / "x.png", "nope")
    with pytest.raises(InputError, match="no split 'query_same'"):
        rank_list(feats, tiny_dataset["images"], tiny_dataset["lists"], tmp_path / "x.png", "SC")
    other = write_features(tmp_path / "other.h5", tiny_dataset["lists"], pack, ["query_diff", "gallery"],
                           manifest="0" * 64)
    with pytest.raises(InputError, match="manifest differs"):
        rank_list(other, tiny_dataset["images"], tiny_dataset["lists"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_embedding_keeps_the_smallest_ids_of_both_splits(tiny_dataset, tmp_path):
    pack = ImagePack(tiny_dataset["images"])
    feats = write_features(tmp_path / "features.h5", tiny_dataset["lists"], pack, ["query_diff", "gallery"])
    q, g = read_split(tiny_dataset["lists"], "query_diff"), read_split(tiny_dataset["lists"], "gallery")
    ids = sorted({s.pid for s in q + g})
    x, pids, clothes = embedding_points(feats, ["query_diff", "gallery"], 2, tiny_dataset["lists"])
    assert sorted(set(pids.tolist())) == ids[:2]
    assert len(x) == sum(s.pid in ids[:2] for s in q + g) == len(clothes)
    out = plot_embedding(feats, tiny_dataset["lists"], tmp_path / "t.png", None, 20)
    assert cv2.imread(str(out)).shape[0] > 200
    with pytest.raises(InputError, match="max_ids"):
        plot_embedding(feats, tiny_dataset["lists"], tmp_path / "t.png", None, 1)


def _history(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_training_curves_group_what_history_holds(tmp_path):
    records = [{"epoch": e, "seconds": 2.0, "steps": 4, "images_per_second": 30.0 + e, "lr_model": 0.1 / e,
                "lr_clothes": 0.01, "loss_id": 3.0 / e, "loss_adv": 1.0, "acc_id": 0.1 * e, "kept_fraction": 0.5,
                **({"eval": {"CC": {"mAP": 0.25, "rank1": 0.5}}} if e % 2 == 0 else {})} for e in range(1, 5)]
    panels = {title: (curve_set, scale) for title, curve_set, scale in curves._panels(records)}
    assert set(panels["losses"][0]) == {"loss_id", "loss_adv"}
    assert set(panels["learning rate"][0]) == {"lr_model", "lr_clothes"} and panels["learning rate"][1] == "log"
    assert set(panels["accuracies and per-epoch fractions"][0]) == {"acc_id", "kept_fraction"}
    assert panels["images / s"][0]["images/s"] == ([1, 2, 3, 4], [31.0, 32.0, 33.0, 34.0])
    assert panels["periodic evaluation (%)"][0] == {"CC mAP": ([2, 4], [25.0, 25.0]), "CC R1": ([2, 4], [50.0, 50.0])}
    out = curves.plot_curves(_history(tmp_path / "h.jsonl", records), tmp_path / "c.png", "tiny/cal")
    assert cv2.imread(str(out)).shape[1] > 400
    with pytest.raises(InputError, match=r"h2.jsonl: epochs \[1, 2, 1\]"):
        curves.plot_curves(_history(tmp_path / "h2.jsonl", records[:2] + records[:1]), tmp_path / "c2.png")
    with pytest.raises(InputError, match="h3.jsonl:1"):
        curves.plot_curves(_history(tmp_path / "h3.jsonl", [{"loss": 1}]), tmp_path / "c3.png")


def _metrics(method, maps, commit="abc123def4567890", streams=None, cmc=True):
    protocols = {}
    for name, m in maps.items():
        protocols[name] = {"query": "query_diff", "gallery": "gallery", "mode": "CC", "mAP": m,
                           **{f"rank{k}": min(m + d, 1.0) for k, d in ((1, .1), (5, .2), (10, .3), (20, .4))},
                           "mINP": m / 2,
                           "num_valid_queries": 7, "num_queries": 8,
                           **({"cmc": np.linspace(m + .1, 1, 50).round(4).tolist()} if cmc else {})}
    report = {"dataset": "tiny", "train_dataset": "tiny", "method": method, "scale": "tiny", "protocols": protocols,
              "provenance": {"config_hash": f"hash-{method}", "git_commit_train": commit, "seed": 1,
                             "manifest_sha256": "a" * 64}}
    if streams:
        report["streams"] = {"all": protocols, **streams}
    return report


def test_metrics_table_lists_every_protocol_stream_and_provenance(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(_metrics("cal", {"SC": 0.5, "CC": 0.2}, commit="f" * 40 + "-dirty")))
    b.write_text(json.dumps(_metrics("deskpro", {"CC": 0.3}, streams={"body": {"CC": _metrics("x", {"CC": 0.125})
                                                                               ["protocols"]["CC"]}})))
    html = tables.metrics_table_html([a, b])
    rows = [r for r in html.split("<tr>")[2:]]
    assert len(rows) == 4  # cal SC, cal CC, deskpro CC, deskpro[body] CC
    assert "<td class=l>deskpro[body]</td><td class=l>CC</td>" in html and "12.5" in html
    assert "hash-cal" in html and "ffffffffffff-dirty" in html and "hash-deskpro" in html
    b.write_text(json.dumps(_metrics("cal", {"CC": 0.3})))
    with pytest.raises(InputError, match="both hold tiny/cal"):
        tables.metrics_table_html([a, b])
    b.write_text(json.dumps({"method": "cal"}))
    with pytest.raises(InputError, match=r"b.json: no 'dataset'"):
        tables.metrics_table_html([a, b])


def test_metrics_table_names_the_stage_backends_each_run_trained_with(tmp_path, capsys):
    paths = {}
    for method, stores in (("3dsl", {"silhouettes": "grabcut", "keypoints": "mediapipe"}), ("baseline", {}),
                           ("cal", None)):
        report = _metrics(method, {"CC": 0.2})
        if stores is not None:
            report["provenance"]["preprocessing"] = stores
        paths[method] = tmp_path / f"{method}.json"
        paths[method].write_text(json.dumps(report))
    html = tables.metrics_table_html(list(paths.values()))
    rows = {r.split("</td>")[0].removeprefix("<td class=l>"): r for r in html.split("<tr>")[2:]}
    assert "<td class=l>keypoints: mediapipe, silhouettes: grabcut</td>" in rows["3dsl"]
    assert "<td class=l>none</td>" in rows["baseline"]
    assert "<td class=l>not recorded</td>" in rows["cal"]  # evaluated before metrics.json named them
    assert "<th class=l>preprocessing</th>" in html
    report = _metrics("3dsl", {"CC": 0.2})
    report["provenance"]["preprocessing"] = {"keypoints": 3}
    paths["3dsl"].write_text(json.dumps(report))
    assert figures_main(["metrics-table", "--out", str(tmp_path / "t.html"), str(paths["3dsl"])]) == 2
    assert "3dsl.json: provenance.preprocessing.keypoints is 3, not a backend name" in _one_error_line(capsys)


def test_cmc_needs_the_curve_and_draws_one_panel_per_protocol(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_metrics("cal", {"SC": 0.5, "CC": 0.2})))
    out = plot_cmc([a], tmp_path / "cmc.png")
    h, w = cv2.imread(str(out)).shape[:2]
    assert w > 1.5 * h  # two panels side by side
    a.write_text(json.dumps(_metrics("cal", {"SC": 0.5}, cmc=False)))
    with pytest.raises(InputError, match="a.json: protocol SC has no 'cmc'"):
        plot_cmc([a], tmp_path / "cmc2.png")


def test_cmc_draws_the_chance_line_and_says_where_it_is_missing(tmp_path):
    from trainer.figures.cmc import cmc_figure

    chance = np.linspace(0.01, 0.5, 50).round(4).tolist()
    a, b, c = (tmp_path / f"{n}.json" for n in "abc")
    for path, method in ((a, "cal"), (b, "3dsl")):
        report = _metrics(method, {"CC": 0.2, "SC": 0.4})
        report["protocols"]["CC"].update(chance_cmc=chance, num_gallery=100)
        path.write_text(json.dumps(report))
    c.write_text(json.dumps(_metrics("baseline", {"CC": 0.3})))  # evaluated before metrics.json kept it
    fig = cmc_figure([a, b, c])
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    lines = {line.get_label(): line for line in panels["CC"].get_lines()}
    assert lines["chance (random ranking)"].get_ydata() == pytest.approx(100 * np.asarray(chance))
    assert "chance: not recorded for baseline (evaluated before it was kept)" in lines
    legend = [t.get_text() for t in panels["CC"].get_legend().get_texts()]
    assert "chance (random ranking)" in legend and any("not recorded for baseline" in t for t in legend)
    sc = {line.get_label() for line in panels["SC"].get_lines()}
    assert "chance: not recorded for cal, 3dsl (evaluated before it was kept)" in sc
    report = _metrics("cal", {"CC": 0.2})
    report["protocols"]["CC"]["chance_cmc"] = [0.5, 1.5]
    a.write_text(json.dumps(report))
    with pytest.raises(InputError, match=r"a.json: protocols.CC.chance_cmc at rank 2 is 1.5"):
        cmc_figure([a])


def test_summary_and_the_command_line(tiny_dataset, tmp_path):
    summary = tmp_path / "grabcut.summary.json"
    summary.write_text(json.dumps({"stage": "silhouettes", "backend": "grabcut", "images": 10, "found": 7,
                                   "found_rate": 0.7}))
    out = tmp_path / "s.html"
    assert figures_main(["summary", "--protocol", str(tiny_dataset["lists"] / "protocol.json"), "--out", str(out),
                         str(summary)]) == 0
    html = out.read_text()
    meta = read_protocol(tiny_dataset["lists"])
    for name, split in meta["splits"].items():
        assert f"<td class=l>{name}</td><td>{split['ids']}</td>" in html
    assert all(f"<td class=l>{p.name}</td>" in html for p in meta["protocols"])
    assert "<td class=l>silhouettes</td><td class=l>grabcut</td><td>10</td><td>7</td><td>70.0</td>" in html


def test_summary_shows_what_each_stage_found_looks_like(tiny_dataset, tmp_path):
    from pipeline.stages.quality import distribution

    shares = [0.02] * 97 + [0.3] * 946
    new = tmp_path / "mediapipe.summary.json"
    new.write_text(json.dumps({"stage": "silhouettes", "backend": "mediapipe", "images": 1088, "found": 1043,
                               "found_rate": 1043 / 1088, "quality": {"mask_share": distribution(
                                   "mask share of the image", "share", "found images", shares, below=0.05,
                                   above=0.95)}}))
    old = tmp_path / "grabcut.summary.json"
    old.write_text(json.dumps({"stage": "keypoints", "backend": "alphapose", "images": 10, "found": 7,
                               "found_rate": 0.7}))
    html = tables.dataset_summary_html(tiny_dataset["lists"] / "protocol.json", [new, old])
    assert ("<td class=l>silhouettes</td><td class=l>mediapipe</td><td class=l>mask share of the image</td>"
            "<td class=l>found images</td><td>1043</td><td>2.0%</td><td>30.0%</td><td>30.0%</td><td>30.0%</td>"
            "<td>30.0%</td><td class=l>97 below 5%, 0 above 95%</td>") in html
    assert "<td class=l>keypoints</td><td class=l>alphapose</td><td class=l>not recorded" in html


def _seeded(tmp_path, dataset, method, seed, sc, cc):
    report = _metrics(method, {"SC": sc, "CC": cc})
    report["dataset"], report["train_dataset"], report["provenance"]["seed"] = dataset, dataset, seed
    path = tmp_path / f"{dataset}-{method}-{seed}.json"
    path.write_text(json.dumps(report))
    return path


def test_benchmark_table_summarises_seeds_and_compares_with_the_baseline(tmp_path):
    from trainer.figures.benchmark import benchmark_rows, table_markdown

    cc = {"baseline": [0.20, 0.24, 0.22], "cal": [0.30, 0.26, 0.28]}
    paths = [_seeded(tmp_path, "bench", m, s, 0.8, cc[m][i]) for m in cc for i, s in enumerate((1, 2, 3))]
    paths += [_seeded(tmp_path, "bench_free", "baseline", s, 0.9, 0.6 + 0.01 * s) for s in (1, 2, 3)]
    rows = benchmark_rows(paths, "bench", "bench_free", ["baseline", "cal"], [3, 1, 2])
    assert [r["label"] for r in rows] == ["baseline", "cal", "oracle: baseline on bench_free"]
    np.testing.assert_allclose(rows[1]["CC mAP"], (28.0, 2.0))  # mean, sample std, in %
    np.testing.assert_allclose(rows[1]["CC rank1"], (38.0, 2.0))
    np.testing.assert_allclose(rows[2]["CC mAP"], (62.0, 1.0))
    diff, se = rows[1]["CC mAP vs baseline"]
    assert diff == pytest.approx(6.0) and se == pytest.approx(np.sqrt((4 + 4) / 3))
    assert "CC mAP vs baseline" not in rows[0]
    md = table_markdown(rows, "bench").splitlines()
    assert md[5] == "| cal | 1,2,3 | 80.0 ± 0.0 | 90.0 ± 0.0 | 28.0 ± 2.0 | 38.0 ± 2.0 | +6.0 ± 1.6 |"
    assert md[6].startswith("| oracle: baseline on bench_free | 1,2,3 | 90.0 ± 0.0 |")

    with pytest.raises(InputError, match=r"bench/cal: metrics for seeds \[1, 2, 3\]; .* needs seeds \[1, 2, 3, 4\]"):
        benchmark_rows(paths, "bench", "bench_free", ["baseline", "cal"], [1, 2, 3, 4])
    with pytest.raises(InputError, match="runs the benchmark does not hold: bench_free/baseline"):
        benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2, 3])
    twin = tmp_path / "again.json"
    twin.write_text(paths[0].read_text())
    with pytest.raises(InputError, match="both hold bench/baseline seed 1"):
        benchmark_rows([*paths, twin], "bench", "bench_free", ["baseline", "cal"], [1, 2, 3])
    general = tmp_path / "general.json"
    general.write_text(json.dumps(_metrics("cal", {"general": 0.5})))
    with pytest.raises(InputError, match="general.json: no SC, CC protocol"):
        benchmark_rows([general], "tiny", None, ["cal"], [1])


BENCH_TSV = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_benchmark_table_says_what_each_seed_cost(tmp_path):
    """With the runs' train / evaluate benchmark files: minutes per seed (the fastest and slowest seed's train +
    evaluate), the largest peak memory, the total; a run without its files, or a file beside no run, is refused."""
    from trainer.figures.benchmark import benchmark_rows, table_html, table_markdown

    paths, timings = [], []
    for m, minutes in (("baseline", (10, 20)), ("cal", (30, 50))):
        for seed, train_min in zip((1, 2), minutes, strict=True):
            run = tmp_path / "bench" / m / f"seed{seed}"
            run.mkdir(parents=True)
            metrics = run / "metrics.json"
            metrics.write_text(_seeded(tmp_path, "bench", m, seed, 0.8, 0.3).read_text())
            paths.append(metrics)
            for job, seconds, rss in (("train", 60 * train_min, 1024 * seed), ("evaluate", 60, "NA")):
                (run / f"{job}.benchmark.tsv").write_text(BENCH_TSV + f"{seconds}\t0\t{rss}\t1\t1\t1\t0\t0\t0\t0\n")
                timings.append(run / f"{job}.benchmark.tsv")
    rows = benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=timings)
    np.testing.assert_allclose(rows[0]["minutes"], (11.0, 21.0))  # evaluation included
    np.testing.assert_allclose(rows[1]["minutes"], (31.0, 51.0))
    assert rows[1]["peak GiB"] == 2.0 and rows[0]["seconds"] == 60 * 32
    md = table_markdown(rows, "bench")
    assert md.splitlines()[2].endswith("| min / seed (fastest–slowest) | peak GiB |")
    assert md.splitlines()[4].endswith("| 11.0–21.0 | 2.0 |")
    assert md.splitlines()[-3].endswith("all 4 runs, one after another: 1 h 54 min wall time.")  # 11+21+31+51
    assert md.splitlines()[-1] == "Every run trained at commit abc123def456."
    assert "1 h 54 min" in table_html(rows, "bench")
    assert "peak GiB" not in table_markdown(benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2]),
                                               "bench")

    with pytest.raises(InputError, match=r"cal/seed2/metrics.json: no evaluate.benchmark.tsv beside it"):
        benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=timings[:-1])
    stray = tmp_path / "elsewhere" / "train.benchmark.tsv"
    stray.parent.mkdir()
    stray.write_text(timings[0].read_text())
    with pytest.raises(InputError, match="benchmark files beside no metrics.json given: .*elsewhere"):
        benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=[*timings, stray])

    # cal trained from a teacher: each seed also pays for the teacher's training of that seed, and its memory counts
    teacher_timings = []
    for seed, minutes in ((1, 5), (2, 7)):
        tsv = tmp_path / "bench" / "cal_teacher" / f"seed{seed}" / "train.benchmark.tsv"
        tsv.parent.mkdir(parents=True)
        tsv.write_text(BENCH_TSV + f"{60 * minutes}\t0\t{4096}\t1\t1\t1\t0\t0\t0\t0\n")
        teacher_timings.append(tsv)
    taught = benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=[*timings, *teacher_timings],
                            teachers={"cal": "cal_teacher"})
    np.testing.assert_allclose(taught[1]["minutes"], (36.0, 58.0))
    assert taught[1]["peak GiB"] == 4.0 and taught[0]["minutes"] == rows[0]["minutes"]
    assert "includes the teacher's training" in table_markdown(taught, "bench")
    shared = benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=[*timings, *teacher_timings],
                            teachers={"cal": "cal_teacher", "baseline": "cal_teacher"})  # one teacher, two students
    np.testing.assert_allclose([r["minutes"] for r in shared], [(16.0, 28.0), (36.0, 58.0)])
    with pytest.raises(InputError, match=r"cal/seed2/metrics.json: cal trains from cal_teacher, and no "
                                         r"train.benchmark.tsv of .*cal_teacher/seed2"):
        benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=[*timings, teacher_timings[0]],
                       teachers={"cal": "cal_teacher"})
    with pytest.raises(InputError, match="benchmark files beside no metrics.json given: .*cal_teacher"):
        benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=[*timings, *teacher_timings])

    timings[0].write_text(BENCH_TSV + "soon\t0\t1\t1\t1\t1\t0\t0\t0\t0\n")
    with pytest.raises(InputError, match="baseline/seed1/train.benchmark.tsv: a value in column s or max_rss"):
        benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2], timings=timings)


def test_benchmark_table_refuses_runs_on_other_data_and_names_each_commit(tmp_path):
    """Seeds of one dataset run on different images are not seed noise: refused, naming both files. The table says
    which commit trained the runs, or which rows each of several commits trained."""
    from trainer.figures.benchmark import benchmark_rows, table_html, table_markdown

    paths = [_seeded(tmp_path, "bench", m, s, 0.8, 0.3) for m in ("baseline", "cal") for s in (1, 2)]
    moved = json.loads(paths[3].read_text())
    moved["provenance"]["git_commit_train"] = "0123456789abcdef" + "0" * 24 + "-dirty"
    paths[3].write_text(json.dumps(moved))
    md = table_markdown(benchmark_rows(paths, "bench", None, ["baseline", "cal"], [1, 2]), "bench")
    assert md.splitlines()[-1] == ("Runs trained at commits 0123456789ab-dirty (cal); abc123def456 (baseline, cal).")
    oracle = []
    for seed in (1, 2):  # the twin's own images: another manifest than bench's, which is no conflict
        path = _seeded(tmp_path, "free", "baseline", seed, 0.9, 0.6)
        report = json.loads(path.read_text())
        report["provenance"]["manifest_sha256"] = "b" * 64
        path.write_text(json.dumps(report))
        oracle.append(path)
    rows = benchmark_rows([*paths, *oracle], "bench", "free", ["baseline", "cal"], [1, 2])
    assert "abc123def456 (baseline, cal, oracle: baseline on free)" in table_html(rows, "bench")
    other = json.loads(oracle[1].read_text())
    other["provenance"]["manifest_sha256"] = "c" * 64
    oracle[1].write_text(json.dumps(other))
    with pytest.raises(InputError, match=r"free-baseline-2.json and .*free-baseline-1.json were run on different "
                                         r"images of free \(manifest cccccccccccc vs bbbbbbbbbbbb\)"):
        benchmark_rows([*paths, *oracle], "bench", "free", ["baseline", "cal"], [1, 2])
    del other["provenance"]["manifest_sha256"]
    oracle[1].write_text(json.dumps(other))
    with pytest.raises(InputError, match="free-baseline-2.json: its provenance has no manifest_sha256"):
        benchmark_rows([*paths, *oracle], "bench", "free", ["baseline", "cal"], [1, 2])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: "), err
    return err.strip()


def _broken_metrics(tmp_path) -> dict[str, tuple[str, str]]:
    """file name -> (its text, what the error must say): truncated, keys missing, values of the wrong type."""
    whole = json.dumps(_metrics("cal", {"SC": 0.5, "CC": 0.2}), indent=2)
    no_rank1 = _metrics("cal", {"SC": 0.5, "CC": 0.2})
    del no_rank1["protocols"]["CC"]["rank1"]
    listed = _metrics("cal", {"SC": 0.5, "CC": 0.2})
    listed["protocols"] = [listed["protocols"]["CC"]]
    worded = _metrics("cal", {"SC": 0.5, "CC": 0.2})
    worded["protocols"]["SC"]["mAP"] = "high"
    cases = {"truncated.json": (whole[: len(whole) // 2], "not JSON"),
             "empty.json": ("", "not JSON"),
             "no_rank1.json": (json.dumps(no_rank1), "protocols.CC has no 'rank1'"),
             "listed.json": (json.dumps(listed), "protocols is [{"),
             "worded.json": (json.dumps(worded), "protocols.SC.mAP is 'high', not a number"),
             "array.json": ("[1, 2]", "the file is [1, 2], not a mapping")}
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text)
    return cases


@pytest.mark.parametrize("figure", ["metrics-table", "cmc", "benchmark-table"])
def test_a_truncated_or_malformed_metrics_file_is_one_line_naming_it(tmp_path, figure, capsys):
    cases = _broken_metrics(tmp_path)
    extra = ["--dataset", "tiny", "--methods", "cal", "--seeds", "1", "--html", str(tmp_path / "t.html")] \
        if figure == "benchmark-table" else []
    for name, (_, expected) in cases.items():
        out = tmp_path / "out"
        assert figures_main([figure, "--out", str(out), *extra, str(tmp_path / name)]) == 2
        line = _one_error_line(capsys)
        assert line.startswith(f"error: {tmp_path / name}: ") and expected in line, line
        assert not out.exists()


def _report_cli(paths, capsys) -> tuple[int, str]:
    from trainer.report import main as report_main

    code = report_main([str(p) for p in paths])
    return code, capsys.readouterr().err


def test_the_report_names_a_missing_or_broken_metrics_file(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_metrics("cal", {"SC": 0.5, "CC": 0.2})))
    code, err = _report_cli([good, tmp_path / "missing.json"], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'missing.json'}: No such file or directory", err
    cases = _broken_metrics(tmp_path)
    for name, (_, expected) in cases.items():
        code, err = _report_cli([good, tmp_path / name], capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: {tmp_path / name}: ") and expected in err, err


def test_the_report_has_a_scale_column_and_aligns_every_column(tmp_path, capsys):
    import re

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_metrics("cal", {"CC": 0.2, "CC_single_shot": 0.25})))
    report = _metrics("deskpro_teacher", {"SC_single_shot": 0.5}, streams={"body": {"CC": _metrics(
        "x", {"CC": 0.125})["protocols"]["CC"]}})
    report["scale"] = "paper"
    report["protocols"]["SC_single_shot"]["num_valid_queries"] = 12345
    b.write_text(json.dumps(report))
    from trainer.report import main as report_main

    assert report_main([str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    spans = [[m.span() for m in re.finditer(r"\S+", line)] for line in lines]
    header = lines[0].split()
    assert header == ["dataset", "method", "protocol", "mAP", "R1", "R5", "R10", "R20", "queries", "scale"]
    assert [line.split()[-1] for line in lines[1:]] == ["tiny", "tiny", "paper", "paper"]
    assert lines[4].split()[:3] == ["tiny", "deskpro_teacher[body]", "CC"]
    for row in spans[1:]:
        assert len(row) == len(header)
        for column, ((start, end), (h_start, h_end)) in enumerate(zip(row, spans[0], strict=True)):
            if header[column] in ("dataset", "method", "protocol", "scale"):
                assert start == h_start  # text from the left of its column
            else:
                assert end == h_end  # numbers to the right


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "protocols.CC.mAP is nan, not a fraction in [0, 1]"),
    (float("inf"), "protocols.CC.mAP is inf, not a fraction in [0, 1]"),
    (93.0, "protocols.CC.mAP is 93.0, not a fraction in [0, 1] (a percentage? metrics.json holds fractions)"),
    (-0.1, "protocols.CC.mAP is -0.1, not a fraction in [0, 1]"),
])
def test_a_metric_no_evaluation_gives_is_refused_by_every_table(tmp_path, value, expected, capsys):
    paths = [_seeded(tmp_path, "bench", "cal", s, 0.8, 0.3) for s in (1, 2)]
    bad = json.loads(paths[1].read_text())
    bad["protocols"]["CC"]["mAP"] = value
    paths[1].write_text(json.dumps(bad))  # NaN and Infinity as Python's json writes them
    bench = ["benchmark-table", "--dataset", "bench", "--methods", "cal", "--seeds", "1", "2", "--html",
             str(tmp_path / "t.html")]
    for figure in (bench, ["metrics-table"], ["cmc"]):
        assert figures_main([*figure, "--out", str(tmp_path / "out"), *map(str, paths)]) == 2
        assert _one_error_line(capsys) == f"error: {paths[1]}: {expected}"
    bad["protocols"]["CC"]["mAP"] = 0.3
    bad["protocols"]["SC"]["cmc"][4] = 1.5
    paths[1].write_text(json.dumps(bad))
    assert figures_main(["cmc", "--out", str(tmp_path / "out"), *map(str, paths)]) == 2
    assert "protocols.SC.cmc at rank 5 is 1.5, not a fraction in [0, 1]" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_the_benchmark_refuses_a_model_evaluated_on_another_dataset_naming_the_file(tmp_path, capsys):
    paths = [_seeded(tmp_path, "bench", m, s, 0.8, 0.3) for m in ("baseline", "cal") for s in (1, 2)]
    oracle = [_seeded(tmp_path, "free", "baseline", s, 0.9, 0.6) for s in (1, 2)]
    args = ["benchmark-table", "--dataset", "bench", "--oracle", "free", "--methods", "baseline", "cal", "--seeds",
            "1", "2", "--out", str(tmp_path / "t.md"), "--html", str(tmp_path / "t.html")]
    assert figures_main([*args, *map(str, paths + oracle)]) == 0
    capsys.readouterr()
    for wrong, trained in ((paths[3], "free"), (oracle[0], "bench")):  # cal tested on bench, the oracle on free
        kept = wrong.read_text()
        report = json.loads(kept)
        report["train_dataset"] = trained
        wrong.write_text(json.dumps(report))
        (tmp_path / "t.md").unlink(missing_ok=True)
        assert figures_main([*args, *map(str, paths + oracle)]) == 2
        assert _one_error_line(capsys) == (f"error: {wrong}: a model trained on {trained} and evaluated on "
                                           f"{report['dataset']}: the benchmark compares models trained and tested "
                                           "on one dataset")
        assert not (tmp_path / "t.md").exists()
        wrong.write_text(kept)
    other = _seeded(tmp_path, "elsewhere", "cal", 1, 0.8, 0.3)  # trained and tested on a third dataset
    assert figures_main([*args, *map(str, paths + oracle), str(other)]) == 2
    line = _one_error_line(capsys)
    assert f"does not hold: elsewhere/cal ({other}); it compares baseline, cal on bench and baseline on the " \
           "oracle free" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-5"])
def test_a_benchmark_file_with_a_value_no_job_takes_is_named(tmp_path, value, capsys):
    run = tmp_path / "bench" / "cal" / "seed1"
    run.mkdir(parents=True)
    metrics = run / "metrics.json"
    metrics.write_text(_seeded(tmp_path, "bench", "cal", 1, 0.8, 0.3).read_text())
    for job in ("train", "evaluate"):
        (run / f"{job}.benchmark.tsv").write_text(BENCH_TSV + "60\t0\t100\t1\t1\t1\t0\t0\t0\t0\n")
    (run / "train.benchmark.tsv").write_text(BENCH_TSV + f"{value}\t0\t100\t1\t1\t1\t0\t0\t0\t0\n")
    assert figures_main(["benchmark-table", "--dataset", "bench", "--methods", "cal", "--seeds", "1", "--out",
                         str(tmp_path / "t.md"), "--html", str(tmp_path / "t.html"), str(metrics), "--timings",
                         str(run / "train.benchmark.tsv"), str(run / "evaluate.benchmark.tsv")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {run / 'train.benchmark.tsv'}: {float(value)} in column s or max_rss"), line
    assert not (tmp_path / "t.md").exists()


@pytest.mark.parametrize("cut", ["half a line", "binary"])
def test_a_cut_history_line_is_named_with_its_line(tmp_path, cut, capsys):
    records = [{"epoch": e, "seconds": 2.0, "loss_id": 1.0 / e} for e in (1, 2, 3)]
    history = tmp_path / "history.jsonl"
    last = json.dumps(records[2])
    history.write_bytes(("".join(json.dumps(r) + "\n" for r in records[:2])).encode()
                        + (last[: len(last) // 2].encode() if cut == "half a line" else b"\xff\xfe{\n"))
    assert figures_main(["curves", "--history", str(history), "--out", str(tmp_path / "c.png")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {history}:3: not a JSON record"), line
    assert not (tmp_path / "c.png").exists()
