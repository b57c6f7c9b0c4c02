"""Process-wide pydicom settings for brainxai, applied once by the application.

pydicom checks every value it reads or writes against its VR and, in its default WARN
mode, reports a bad value in a warning that quotes it. A bad Patient's Name or ID would
then be written to the logs, which must never hold patient data; the checks also cost
about a fifth of the C-STORE receiver's CPU time. brainxai validates what it relies on
itself (UIDs, geometry, pixel data) and checks the objects it writes with dciodvfy in the
tests, so value validation is switched off (``IGNORE``) for reading and writing.

pydicom is imported when the settings are applied, not with this module: the CLI imports
this module to start up, and ``brainxai --help`` does not need pydicom.
"""

from __future__ import annotations


def configure_pydicom() -> None:
    """Switch off pydicom's per-value validation warnings (see the module docstring)."""
    from pydicom import config  # slow to import; only when applied (module docstring)

    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
