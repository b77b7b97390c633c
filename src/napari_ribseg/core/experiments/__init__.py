"""The study runner of Cheng & Lam (2021) and its reports: ``ribseg experiment CONFIG --out DIR``.

``load_study_config`` reads a preset (``paper``, ``smoke``) or a YAML file; ``run_study`` is a job
(``core.jobs`` protocol) that runs variants x freeze strategies x training-set sizes x augmentation
presets x folds, resumable from its results CSV; ``write_report`` rebuilds the Markdown report and
plots from a CSV. Importing this package does not import torch.
"""

from napari_ribseg.core.evaluation import predict_masks
from napari_ribseg.core.experiments.config import (
    PRESETS,
    DataConfig,
    SalientConfig,
    StudyConfig,
    StudyConfigError,
    load_study_config,
    merge_config,
)
from napari_ribseg.core.experiments.report import (
    RESULT_COLUMNS,
    paired_effect,
    read_results,
    study_effects,
    summarise,
    write_report,
)
from napari_ribseg.core.experiments.runner import (
    StudyResult,
    load_study_data,
    run_study,
    run_study_sync,
)

__all__ = [
    "PRESETS",
    "RESULT_COLUMNS",
    "DataConfig",
    "SalientConfig",
    "StudyConfig",
    "StudyConfigError",
    "StudyResult",
    "load_study_config",
    "load_study_data",
    "merge_config",
    "paired_effect",
    "predict_masks",
    "read_results",
    "run_study",
    "run_study_sync",
    "study_effects",
    "summarise",
    "write_report",
]
