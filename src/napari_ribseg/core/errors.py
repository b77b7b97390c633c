"""Exceptions raised by the core. Each message names the file, the frame and what was expected."""

from __future__ import annotations


class RibsegError(Exception):
    """Base class of every error the core raises on purpose."""


class StackReadError(RibsegError):
    """A file or folder could not be read as an ultrasound stack."""


class UnsupportedFormatError(StackReadError):
    """No reader in the registry handles this path (or a needed decoder package is missing)."""


class DatasetError(RibsegError):
    """A paired image/mask dataset is inconsistent (unmatched files, size mismatch, empty)."""


class CheckpointError(RibsegError):
    """A checkpoint or model card is missing, unsafe (pickle) or does not match its architecture."""


class DeviceError(RibsegError):
    """The requested compute device is not available."""


class TrainingError(RibsegError):
    """Fine-tuning cannot start or failed (too few frames, bad configuration)."""


class ProjectError(DatasetError):
    """A review project is damaged, belongs to another stack, or is open in another viewer."""


class MemoryBudgetError(RibsegError):
    """A file declares (or an operation needs) more memory than the budget allows."""


class OutputPathError(RibsegError):
    """A file to be written cannot be written there (a folder, a read-only place, a name too long)."""
