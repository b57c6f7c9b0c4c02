"""The shared vocabulary: errors, class names, model identity and decision records.

The ground floor: imports nothing of brainxai and no DICOM or deep-learning library, so that
every other package (``inference``, ``explain``, ``dicom_io``, ``plugin``) can use the same
words without importing each other.
"""
