"""Coded concepts used in the report.

Standard codes (DCM, SCT, UCUM) are used where a fitting concept exists and could be
checked against pydicom's code dictionary offline. The four classes, the report title and
our own measurement names use the private coding scheme 99BRAINXAI (PS3.16 section 8.2
allows "99"-prefixed private schemes), declared in CodingSchemeIdentificationSequence.
SNOMED CT concepts for glioma, meningioma and pituitary tumour exist, but their identifiers
could not be verified here, so the classes are private codes rather than guessed SCT codes.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from vocabulary.identity import CLASSES

SCHEME = "99BRAINXAI"


def private(value: str, meaning: str) -> Code:
    return Code(value[:16], SCHEME, meaning[:64])


REPORT_TITLE = private("BXAI-REPORT", "Brain MR tumour classification (AI, research use)")
STUDY_RESULT = private("BXAI-STUDY", "Study classification")
SERIES_RESULT = private("BXAI-SERIES", "Series classification")
SERIES_SKIPPED = private("BXAI-SKIPPED", "Series not analysed")
EXPLANATION = private("BXAI-XAI", "Explanation quality")
METHOD = private("BXAI-METHOD", "Explanation method")
REASON = private("BXAI-REASON", "Reason")
MODEL_NAME = private("BXAI-MODEL", "Model name")
SERIES_DESCRIPTION = private("BXAI-SERDESC", "Series description")
N_SLICES = private("BXAI-NSLICES", "Number of slices")
N_ELIGIBLE = private("BXAI-NELIGIBLE", "Number of eligible slices")
OUTSIDE_BRAIN = private("BXAI-OUTSIDE", "Heatmap mass mostly outside the brain")

CLASS_CODES = {
    "glioma": private("BXAI-GLIOMA", "Glioma"),
    "meningioma": private("BXAI-MENINGIOMA", "Meningioma"),
    "notumor": private("BXAI-NOTUMOR", "No tumour found"),
    "pituitary": private("BXAI-PITUITARY", "Pituitary tumour"),
}
PROBABILITY_CODES = {c: private(f"BXAI-P-{c.upper()}", f"Probability of {c}") for c in CLASSES}
METRIC_CODES = {
    "brain_mass": private("BXAI-BRAINMASS", "Heatmap mass inside the brain"),
    "deletion_auc": private("BXAI-DELAUC", "Deletion AUC"),
    "insertion_auc": private("BXAI-INSAUC", "Insertion AUC"),
    "deletion_auc_random": private("BXAI-DELAUC-RND", "Deletion AUC of a random map"),
    "insertion_auc_random": private("BXAI-INSAUC-RND", "Insertion AUC of a random map"),
    "head_fraction": private("BXAI-HEADFRAC", "Head fraction of the image"),
}

# Standard codes (checked in pydicom.sr codes).
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
SERIES_INSTANCE_UID = Code("112002", "DCM", "Series Instance UID")
STUDY_INSTANCE_UID = Code("110180", "DCM", "Study Instance UID")
COMMENT = Code("121106", "DCM", "Comment")
FINDING = Code("121071", "DCM", "Finding")
SOURCE_OF_MEASUREMENT = Code("121112", "DCM", "Source of Measurement")
INDETERMINATE = Code("82334004", "SCT", "Indeterminate")
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")
NO_UNITS = Code("1", "UCUM", "no units")


def class_code(label: str) -> Code:
    """The coded concept of a class name or 'indeterminate'."""
    if label in CLASS_CODES:
        return CLASS_CODES[label]
    if label == "indeterminate":
        return INDETERMINATE
    return private(f"BXAI-{label.upper()}", label)


def metric_code(name: str) -> Code:
    return METRIC_CODES.get(name) or private(f"BXAI-Q-{name.upper()}", name)


def scheme_identification() -> Dataset:
    """CodingSchemeIdentificationSequence item for 99BRAINXAI (PS3.3 C.12.1.1.2)."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "brainxai private codes"
    item.CodingSchemeResponsibleOrganization = "brainxai project"
    return item
