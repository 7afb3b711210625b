"""A tiny study end to end: runs are trained once, skipped the second time, and the results file is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from camix.cli import main
from camix.config import dump_config, load_config
from camix.errors import ConfigError
from camix.study import NOTES_MARKER, adaptation_rows, load_study, plan
from tests.conftest import TINY_SIZE


def write_study(tmp_path: Path, root: Path) -> Path:
    text = f"""
out_dir: {tmp_path / "runs"}
results: {tmp_path / "results" / "RESULTS.md"}
seeds: [0, 1]
synthcity: {{dir: {root}, seed: 0, size: [{TINY_SIZE[0]}, {TINY_SIZE[1]}], num_source: 8, num_target_train: 6,
            num_target_val: 4}}
overrides: [data.crop=48x48, data.workers=0, train.iterations=2, train.eval_every=1, train.log_every=1,
            method.noise_passes=2]
pretrain: configs/synthcity/pretrain.yaml
runs:
  source_only: configs/synthcity/source_only.yaml
  oracle: configs/synthcity/oracle.yaml
  camix: configs/synthcity/camix.yaml
per_class: [source_only, camix, oracle]
tables:
  - {{title: "Main", rows: [source_only, camix, oracle], baseline: source_only}}
"""
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_study_trains_skips_and_reports(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(tmp_path, synthcity_root)
    study = load_study(study_file)
    jobs = plan(study)
    names = [(name, seed) for name, seed, _ in jobs]
    assert names[:5] == [("pretrain", 0), ("source_only", 0), ("oracle", 0), ("camix", 0), ("pretrain", 1)]
    oracle = jobs[2][2]
    assert oracle.data.source.root == str(synthcity_root / "cityscapes")  # the data prefix is rewritten
    assert oracle.out_dir == str(tmp_path / "runs" / "oracle_seed0")
    assert oracle.model.pretrained == str(tmp_path / "runs" / "pretrain_seed0" / "checkpoints" / "last.pt")
    assert jobs[0][2].model.pretrained is None

    assert main(["study", str(study_file), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert len(re.findall(r"\[\d/8\] \w+ seed \d: mIoU19", first)) == 8
    results = (tmp_path / "results" / "RESULTS.md").read_text()
    for needle in (
        "## Main",
        "| source_only",
        "| camix",
        "| oracle",
        "Per-class IoU",
        "curves.png",
        "Cost per run",
        "| settled",
    ):
        assert needle in results, needle
    assert (tmp_path / "results" / "curves.png").stat().st_size > 1000
    assert len((tmp_path / "results" / "curves.csv").read_text().splitlines()) == 1 + 3 * 2  # 3 rows x 2 evals

    results_file = tmp_path / "results" / "RESULTS.md"
    results_file.write_text(results_file.read_text() + "\n" + NOTES_MARKER + "\nMy reading of the tables.\n")
    assert main(["study", str(study_file), "--no-progress"]) == 0  # everything is finished: nothing retrains
    assert capsys.readouterr().out.count("done before") == 8
    assert results_file.read_text().count("My reading of the tables.") == 1  # hand-written notes survive


def test_study_rejects_unknown_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("runs: {a: configs/synthcity/camix.yaml}\ntables: [{title: T, rows: [a, b], baseline: a}]\n")
    with pytest.raises(ConfigError, match=r"unknown runs \['b'\]"):
        load_study(path)
    path.write_text("runz: {}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'study\.runz'"):
        load_study(path)


def test_report_only_survives_torn_metrics_and_counts_time_over_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        f"out_dir: {tmp_path / 'runs'}\nresults: {tmp_path / 'RESULTS.md'}\nseeds: [0]\n"
        "overrides: [train.iterations=20]\nruns: {source_only: configs/synthcity/source_only.yaml}\n"
        "tables: [{title: Main, rows: [source_only], baseline: source_only}]\n"
    )
    (_, _, cfg), *_ = plan(load_study(path))
    run = Path(cfg.out_dir)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    records = [
        {"iteration": 10, "lr": 0.1, "sec_per_iter": 0.5, "loss/total": 1.0},
        {"iteration": 20, "lr": 0.1, "sec_per_iter": 1.5, "loss/total": 0.5},
        {"iteration": 20, "eval/model": "student", "eval/miou19": 33.0, "eval/miou16": 34.0, "eval/miou13": 35.0},
    ]
    torn = "".join(json.dumps(r) + "\n" for r in records) + '{"iteration": 21, "sec_per'  # killed mid-write
    (run / "metrics.jsonl").write_text(torn)
    summary = {"iteration": 20, "final": {"miou19": 33.0}, "started": "2026-01-01T00:00:00+00:00", "seconds": 5400.0}
    (run / "summary.json").write_text(json.dumps(summary))  # 90 minutes over all resumed legs
    assert main(["study", str(path), "--report-only", "--no-progress"]) == 0
    assert "done before" in capsys.readouterr().out
    results = (tmp_path / "RESULTS.md").read_text()
    assert "| source_only | 20 | 1.000 | 90.0 |" in results  # mean s/iteration of the two records; wall minutes
    assert "Total wall time of the 1 finished runs: 1.50 h" in results


def test_a_run_of_another_config_is_moved_aside_not_resumed(tiny_config, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from camix.config_tree import replace
    from camix.study import continue_run, is_finished

    cfg = tiny_config("source_only")
    first = continue_run(cfg, progress=False)
    assert continue_run(cfg, progress=False)["final"]["miou19"] == first["final"]["miou19"]  # resumed: finished
    changed = replace(cfg, seed=1)
    assert not is_finished(changed)
    continue_run(changed, progress=False)
    assert "is moved aside" in capsys.readouterr().out
    (old,) = Path(cfg.out_dir).parent.glob("source_only.old-*")
    assert "seed: 0" in (old / "config.yaml").read_text() and is_finished(changed) and not is_finished(cfg)


def test_each_network_starts_from_its_own_initialisation(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"out_dir: {tmp_path / 'runs'}\nseeds: [3]\npretrain: configs/synthcity/pretrain.yaml\n"
        "pretrains: {daformer_mittiny: configs/synthcity/daformer_pretrain.yaml}\n"
        "runs: {dacs: configs/synthcity/dacs.yaml, daformer: configs/synthcity/daformer.yaml}\n"
        "tables: [{title: T, rows: [pretrain_daformer_mittiny, daformer], baseline: dacs}]\n"
    )
    jobs = {name: cfg for name, _, cfg in plan(load_study(path))}
    assert list(jobs) == ["pretrain", "pretrain_daformer_mittiny", "dacs", "daformer"]
    assert adaptation_rows(load_study(path), list(jobs)) == ["dacs", "daformer"]  # the curves leave the inits out
    init = jobs["pretrain_daformer_mittiny"]
    assert init.model.name == "daformer_mittiny" and init.model.pretrained is None
    assert init.out_dir == str(tmp_path / "runs" / "pretrain_daformer_mittiny_seed3") and init.seed == 3
    assert jobs["daformer"].model.pretrained == str(Path(init.out_dir) / "checkpoints" / "last.pt")
    assert jobs["dacs"].model.pretrained == str(tmp_path / "runs" / "pretrain_seed3" / "checkpoints" / "last.pt")


def test_packaged_study_has_the_augmentation_diagnostic_and_a_generator_version(tmp_path: Path) -> None:
    from camix.data.synthcity import GENERATOR_VERSION

    study = load_study("configs/synthcity/study.yaml")  # the study of record, on the default generator
    assert study.synthcity.version == GENERATOR_VERSION == "2.0"
    diagnostic = load_config(study.runs["source_only_aug"])
    assert diagnostic.method.name == "source_only" and diagnostic.method.augment_source
    assert diagnostic.data.target is None and not load_config(study.runs["source_only"]).method.augment_source
    assert "source_only_aug" in study.tables[0].rows
    v11 = load_study("configs/synthcity/study_v11.yaml")  # the earlier study on generator 1.1, in its own folders
    assert v11.synthcity.version == "1.1" and v11.synthcity.dir != study.synthcity.dir
    assert v11.out_dir != study.out_dir and v11.results != study.results
    main = load_study("configs/synthcity/study_main.yaml")  # its Table 2, run first, sharing the runs
    assert main.out_dir == study.out_dir and set(main.runs) < set(study.runs) and study.tables[0] == main.tables[0]
    assert {r for t in v11.tables[:5] for r in t.rows} - {"camix_sp_cr"} <= {r.removesuffix("_1k") for r in study.runs}
    configs = {(name, seed): cfg for name, seed, cfg in plan(study)}
    for table in study.tables:  # every row of a table shares one schedule: 2000 iterations (Table 2) or 1000
        rows = [configs[(row, 0)] for row in table.rows]  # a null threshold_ramp is train.iterations
        schedules = {(c.train.iterations, c.method.threshold_ramp or c.train.iterations) for c in rows}
        assert len(schedules) == 1 and schedules < {(2000, 2000), (1000, 1000)}, table.title
    assert configs[("camix", 0)].train.iterations == 2000 and configs[("camix_1k", 0)].train.iterations == 1000
    # the calibration records live beside their results; their baselines are the study's very runs
    calibration = load_study("benchmarks/synthcity/calibration_v2_seed0/study.yaml")
    assert set(calibration.runs) == {"source_only", "source_only_aug", "oracle", "mean_teacher", "cutmix", "dacs"}
    assert all(configs[(name, seed)] == cfg for name, seed, cfg in plan(calibration))  # the calibration's runs
    unseen = load_study("benchmarks/synthcity/calibration_v2_seed1/study.yaml")
    assert unseen.synthcity.seed == 1 and unseen.synthcity.dir != calibration.synthcity.dir
    assert unseen.out_dir != calibration.out_dir
    for v21 in ("study_v21", "study_v21_main"):
        assert load_study(f"configs/synthcity/{v21}.yaml").synthcity.version == "2.1"
    path = tmp_path / "s.yaml"
    path.write_text("synthcity: {version: '0.9'}\n")
    with pytest.raises(ConfigError, match=r"study\.synthcity\.version: unknown SynthCity generator version '0\.9'"):
        load_study(path)


def test_run_overrides_apply_to_their_run_only(synthcity_root: Path, tmp_path: Path) -> None:
    """A longer schedule for the main comparison, a shorter one for ablations: per-run overrides."""
    study_file = write_study(tmp_path, synthcity_root)
    text = study_file.read_text() + "run_overrides: {oracle: [train.iterations=5, optim.lr=0.5]}\n"
    study_file.write_text(text)
    iterations = {
        (name, seed): (cfg.train.iterations, cfg.optim.lr) for name, seed, cfg in plan(load_study(study_file))
    }
    assert iterations[("oracle", 1)] == (5, 0.5)
    assert iterations[("camix", 1)] == (2, 0.0025) and iterations[("pretrain", 0)] == (2, 0.01)
    study_file.write_text(text.replace("{oracle:", "{orcale:"))
    with pytest.raises(ConfigError, match=r"run_overrides names unknown runs \['orcale'\]"):
        load_study(study_file)


def test_a_run_another_process_is_training_is_skipped_and_left_out(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from camix.runlock import RunLock

    study_file = write_study(tmp_path, synthcity_root)
    busy = tmp_path / "runs" / "camix_seed1"
    with RunLock(busy):  # another process (here: another open file) trains camix seed 1
        assert main(["study", str(study_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "camix seed 1: skipped, being trained by another process" in out
    assert len(re.findall(r"\[\d/8\] \w+ seed \d: mIoU19", out)) == 7  # every other run trained
    results = (tmp_path / "results" / "RESULTS.md").read_text()
    camix_row = next(line for line in results.splitlines() if line.startswith("| camix "))
    assert "| 1 |" in camix_row  # one finished seed of camix in the table
    assert main(["study", str(study_file), "--no-progress"]) == 0  # the lock is gone: the run is trained now
    assert "camix seed 1: mIoU19" in capsys.readouterr().out


def test_runs_wait_for_a_pretrain_another_process_is_training(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run never starts from a half-trained initialisation: the runs of that seed are skipped, not started."""
    from camix.runlock import RunLock

    study_file = write_study(tmp_path, synthcity_root)
    with RunLock(tmp_path / "runs" / "pretrain_seed1"):
        assert main(["study", str(study_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "pretrain seed 1: skipped, being trained by another process" in out
    for name in ("source_only", "oracle", "camix"):
        assert f"{name} seed 1: skipped, pretrain seed 1 is not finished" in out
        assert not (tmp_path / "runs" / f"{name}_seed1").exists()
    assert len(re.findall(r"\[\d/8\] \w+ seed 0: mIoU19", out)) == 4  # seed 0 trained in full
    assert main(["study", str(study_file), "--no-progress"]) == 0
    assert len(re.findall(r"seed 1: mIoU19", capsys.readouterr().out)) == 4


def test_the_hrda_study_runs_every_network_on_the_512_data() -> None:
    """study_hrda.yaml: the data/synthcity roots of the DAFormer configs move to the study's data/synthcity_512, the
    HRDA configs' own data/synthcity_512 roots stay (a sibling folder is not the data/synthcity prefix)."""
    jobs = {(name, seed): cfg for name, seed, cfg in plan(load_study("configs/synthcity/study_hrda.yaml"))}
    assert {name for name, _ in jobs} == {"pretrain_daformer_mittiny", "daformer", "hrda", "hrda_camix"}
    for (name, _), cfg in jobs.items():
        assert cfg.data.source.root == "data/synthcity_512/gta", name
        assert cfg.data.val.root == "data/synthcity_512/cityscapes", name
        assert (cfg.model.hrda is not None) == name.startswith("hrda"), name
    daformer, hrda = jobs[("daformer", 0)], jobs[("hrda", 0)]
    assert daformer.data.crop == (128, 128) and daformer.data.val.label_size == "native"
    assert hrda.data.crop == (256, 256) and hrda.data.val.size is None
    assert hrda.model.pretrained == jobs[("pretrain_daformer_mittiny", 0)].out_dir + "/checkpoints/last.pt"


def test_the_heading_is_the_study_title_and_differing_crops_are_named_per_run(tmp_path: Path) -> None:
    def report(**keys: object) -> str:
        runs = dict.fromkeys(("small", "large", "wide"), "configs/synthcity/source_only.yaml")
        table = {"title": "Main", "rows": ["small", "large"], "baseline": "small"}
        study = {"out_dir": str(tmp_path / "runs"), "results": str(tmp_path / "RESULTS.md"), "seeds": [0]}
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump({**study, "runs": runs, "tables": [table], **keys}, sort_keys=False))
        assert main(["study", str(path), "--report-only", "--no-progress"]) == 0
        return (tmp_path / "RESULTS.md").read_text().replace("\n", " ")

    w, h = load_config("configs/synthcity/source_only.yaml").data.crop
    larger = {"large": ["data.crop=96x96"], "wide": ["data.crop=96x96"]}
    results = report(title="HRDA on SynthCity", overrides=["train.threads=1"], run_overrides=larger)
    assert results.startswith("# HRDA on SynthCity ")
    assert " 1 torch threads per run," in results  # the runs' setting, not the reporting process's
    assert f"crops {w}x{h} (small), 96x96 (large, wide), batch" in results
    results = report()  # the default heading; one crop size is named once
    assert results.startswith("# SynthCity study: the paper's Tables 2, 4, 5 and 6 ")
    assert f"crops {w}x{h}, batch" in results
