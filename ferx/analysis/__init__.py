"""Dataset-level analysis: batch runs, metrics, calibration, confusion, embeddings, failures, figures."""

from ferx.analysis.analyze import analyze, analyze_packed
from ferx.analysis.metrics import classification_metrics, expected_calibration_error, fit_temperature
from ferx.analysis.runs import ModelRun, run_model
from ferx.analysis.tables import (agreement, cell_samples, confusion_frame, cross_cell_samples, cross_model_frame,
                                  disagreements, failures, per_class_table, reliability, summary_table)

__all__ = ["ModelRun", "agreement", "analyze", "analyze_packed", "cell_samples", "classification_metrics", "confusion_frame",
           "cross_cell_samples", "cross_model_frame", "disagreements", "expected_calibration_error", "failures",
           "fit_temperature", "per_class_table", "reliability", "run_model", "summary_table"]
