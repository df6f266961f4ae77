"""What an audit compares: model files checked against the data, and the classes audited.

The same checks as ``qpae-unlearn``, before any work: every model file (original, unlearned,
retrain) must have been trained on this dataset's classes and split, else its forget-train and
forget-test clips would be other clips (or other people). Classes are given by name
(``forget=[theo]``) or by index (``forget_index=[0]``), never a number read as an index.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from qpae.checkpoints import ModelFile, read_model
from qpae.unlearning.request import RequestError, selections_from_config
from qpae.unlearning.runner import check_compatible

log = logging.getLogger(__name__)


def read_checked(paths: Mapping[str, str | Path], datamodule) -> dict[str, ModelFile]:
    """Read every model file once and check it against ``datamodule`` (dataset, classes, split).

    Raises:
        FileNotFoundError: a model file is missing.
        ValueError: a file of another dataset, other classes or another split (the message names
            the file).
    """
    files = {}
    for name, path in paths.items():
        files[name] = read_model(path)
        check_compatible(files[name].meta, datamodule, Path(path))
    return files


def audited_classes(
    forget: object,
    forget_index: object,
    class_names: Sequence[str],
    unlearned_metas: Mapping[str, dict],
) -> tuple[int, ...]:
    """The class indices to audit: ``forget`` (names) or ``forget_index`` (indices) when given,
    else every class the unlearned models record as forgotten. A model that forgot other classes
    than the audited ones is named in a warning (its measures answer another question).

    Raises:
        RequestError: both keys set, an unknown name, an index out of range, or nothing to audit.
    """
    recorded = {
        name: tuple(sorted(meta.get("forgotten_classes", []))) for name, meta in unlearned_metas.items()
    }
    if forget is None and forget_index is None:
        classes = tuple(sorted({c for cs in recorded.values() for c in cs}))
        if not classes:
            raise RequestError(
                "no forget classes: set forget=[NAME,...] or forget_index=[I,...], or pass unlearned "
                "models that record them"
            )
    else:
        [selection] = selections_from_config(forget=forget, forget_index=forget_index)
        classes = selection.resolve(class_names)
    for name, forgot in recorded.items():
        if forgot and forgot != classes:
            log.warning(
                "%s forgot %s, but the audit is of %s",
                name,
                [class_names[c] for c in forgot],
                [class_names[c] for c in classes],
            )
    return classes
