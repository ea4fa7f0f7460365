"""Training curves: drawn by the trainer at each validation, redrawn from the log by `t2 plot-run`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.errors import BadInputError
from t2cli.plots import training
from t2cli.plots.training import plot_run, write_run_curves
from t2cli.training.records import StepRecord
from t2cli.training.run_folder import read_run
from tests.helpers import AlwaysC, make_trainer, tiny_model
from tests.plots.helpers import check_png


def records() -> list[StepRecord]:
    return [
        StepRecord(step, reward=0.1 * step, kl=0.01 * step, grad_norm=1.0, tokens=10, sample_s=0, score_s=0,
                   grad_s=0, val_score=0.5 + 0.1 * step if step % 2 == 0 else None)
        for step in range(1, 5)
    ]  # fmt: skip


def test_curves_show_reward_kl_and_validation_against_the_base(tmp_path) -> None:
    data = plot_run(records(), 0.4, tmp_path / "curves.png", title="arc")
    check_png(tmp_path / "curves.png", 1000, 360)
    assert data.steps == (1, 2, 3, 4)
    assert data.reward == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert data.kl == pytest.approx((0.01, 0.02, 0.03, 0.04))
    assert data.val_steps == (2, 4) and data.val_score == pytest.approx((0.7, 0.9))
    assert data.base_val == 0.4


def test_an_empty_log_is_refused(tmp_path) -> None:
    with pytest.raises(BadInputError, match="no steps"):
        plot_run([], None, tmp_path / "curves.png")


def test_the_trainer_draws_curves_at_each_validation_and_plot_run_redraws_them(tmp_path) -> None:
    trainer = make_trainer(tiny_model(), AlwaysC(), tmp_path, steps=4, batch_size=5, lr=0.1, val_every=2)
    trainer.observers = [write_run_curves]  # what `t2 train` gives the trainer
    result = trainer.run()
    check_png(tmp_path / "curves.png", 1000, 360)
    logged, base_val = read_run(tmp_path)
    assert logged == result.steps and base_val == result.base_val
    assert [r.step for r in logged if r.val_score is not None] == [2, 4]

    redrawn = tmp_path / "again.png"
    cli = CliRunner().invoke(app, ["plot-run", str(tmp_path), "-o", str(redrawn)])
    assert cli.exit_code == 0, cli.output
    assert redrawn.read_bytes() == (tmp_path / "curves.png").read_bytes()  # same records, same picture


def test_without_matplotlib_training_skips_the_curves(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(training, "plots_available", lambda: False)
    trainer = make_trainer(tiny_model(), AlwaysC(), tmp_path, steps=2, batch_size=5, val_every=1)
    trainer.observers = [write_run_curves]
    trainer.run()
    assert (tmp_path / "log.jsonl").is_file() and not (tmp_path / "curves.png").exists()


def test_plot_run_needs_a_run_folder_and_readable_lines(tmp_path) -> None:
    missing = CliRunner().invoke(app, ["plot-run", str(tmp_path / "nowhere")])
    assert missing.exit_code == 3 and "log.jsonl does not exist" in missing.output
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    broken = CliRunner().invoke(app, ["plot-run", str(tmp_path)])
    assert broken.exit_code == 2 and "line 1 is not a step record" in broken.output
