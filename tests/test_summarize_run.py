"""experiments/summarize_run.py: columns by run kind, last and best snapshots by direction."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO


def _summary(tmp_path, records, *args):
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
  return subprocess.run([sys.executable, str(REPO / "experiments" / "summarize_run.py"),
                         str(tmp_path), "--every", "1", *args], check=True, capture_output=True,
                        text=True).stdout


def test_gan_run_reports_last_and_best_in_each_metrics_direction(tmp_path):
  records = [dict(epoch=e, epoch_time_s=10.0, lod=lod, loss_d=1.0, swd_avg=swd, msssim=0.1,
                  classifier_score=cs, classifier_fd=fd)
             for e, lod, swd, cs, fd in [(1, 3.0, 50.0, 2.0, 300.0), (2, 2.5, 30.0, 4.0, 200.0),
                                         (3, 2.0, 40.0, 3.0, 250.0)]]
  out = _summary(tmp_path, records)
  assert out.splitlines()[0] == ("| epoch | lod | loss_d | classifier_score | classifier_fd | "
                                 "swd_avg | msssim | s/epoch |")
  assert "swd_avg: last 40 (epoch 3), best 30 (epoch 2)" in out
  assert "classifier_score: last 3 (epoch 3), best 4 (epoch 2)" in out
  assert "classifier_fd: last 250 (epoch 3), best 200 (epoch 2)" in out
  assert "msssim:" not in out and "lod:" not in out     # no better direction
  assert "wall time 0.01 h" in out


def test_ssl_run_keeps_its_test_error_columns(tmp_path):
  records = [dict(epoch=e, epoch_time_s=5.0, test_errors_ema=t, test_errors_raw=t + 3,
                  train_err=0.0, loss_lab=0.1, loss_unl=0.3, loss_gen=1.0)
             for e, t in [(1, 300), (2, 100), (3, 120)]]
  out = _summary(tmp_path, records, "--keys", "test_errors_ema,loss_gen")
  assert out.splitlines()[0] == "| epoch | test_errors_ema | loss_gen | s/epoch |"
  assert "last epoch: 120 test errors with EMA parameters, 123 with raw parameters" in out
  assert "test_errors_ema: last 120 (epoch 3), best 100 (epoch 2)" in out
