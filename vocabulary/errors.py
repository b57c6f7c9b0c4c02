"""The project's exception hierarchy: every error we raise derives from BrainxaiError."""


class BrainxaiError(Exception):
    """Base class of every error raised by brainxai."""


class InputError(BrainxaiError):
    """The input (an image, a file, an upload) cannot be used; the message says why."""


class ModelError(BrainxaiError):
    """A model bundle or registry reference cannot be loaded."""


class DicomError(BrainxaiError):
    """A DICOM object cannot be read, decoded or written."""


class NetworkError(BrainxaiError):
    """A DICOM association or HTTP call to a peer failed."""


class JobError(BrainxaiError):
    """A job cannot be run or changed in the requested way."""
