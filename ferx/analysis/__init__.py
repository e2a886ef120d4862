"""Dataset-level analysis: metrics, calibration."""

from ferx.analysis.metrics import classification_metrics, expected_calibration_error

__all__ = ["classification_metrics", "expected_calibration_error"]
