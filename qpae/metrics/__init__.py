"""Metrics for evaluating unlearning (forget/retain accuracy, leakage, erasure rates)."""

from qpae.metrics.unlearning import (
    ERB,
    METRIC_ORDER,
    ERBPaper,
    FalseAcceptanceRate,
    FalseRejectionRate,
    ForgetAccuracy,
    InformationLeakage,
    PrivacyErasureRate,
    RetainAccuracy,
    erb,
    erb_paper,
    unlearning_metrics,
)

__all__ = [
    "ERB",
    "ERBPaper",
    "METRIC_ORDER",
    "FalseAcceptanceRate",
    "FalseRejectionRate",
    "ForgetAccuracy",
    "InformationLeakage",
    "PrivacyErasureRate",
    "RetainAccuracy",
    "erb",
    "erb_paper",
    "unlearning_metrics",
]
