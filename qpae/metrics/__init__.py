"""Metrics for evaluating unlearning (forget/retain accuracy, leakage, erasure rates)."""

from qpae.metrics.unlearning import (
    ERB,
    FalseAcceptanceRate,
    FalseRejectionRate,
    ForgetAccuracy,
    InformationLeakage,
    PrivacyErasureRate,
    RetainAccuracy,
    unlearning_metrics,
)

__all__ = [
    "ERB",
    "FalseAcceptanceRate",
    "FalseRejectionRate",
    "ForgetAccuracy",
    "InformationLeakage",
    "PrivacyErasureRate",
    "RetainAccuracy",
    "unlearning_metrics",
]
