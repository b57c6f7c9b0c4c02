"""Coded concepts of the Structured Report (PS3.16 TID 1500, section 8 on coding schemes).

Standard concepts are taken from pydicom's code dictionary (``pydicom.sr.codedict.codes``),
so every DCM, SCT, LN and UCUM code here is checked offline when this module is imported.
Where no standard concept exists (the four class names other than "indeterminate", the
per-class probabilities, the explanation methods other than saliency and the explanation
quality figures) the private coding scheme 99BRAINXAI is used (PS3.16 section 8.2: private
schemes start with "99") and declared in the SR's Coding Scheme Identification Sequence
(0008,0110; PS3.3 C.12.1.1.2). Code meanings are readable names, never internal keys.
SNOMED CT concepts for glioma, meningioma and pituitary tumour exist but are not in the
offline dictionary, so they are private codes rather than unverified SCT codes.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from vocabulary.sentence import CLASS_NAMES

SCHEME = "99BRAINXAI"


def private(value: str, meaning: str) -> Code:
    """A 99BRAINXAI code (value up to 16 characters, meaning up to 64: SH and LO)."""
    return Code(value[:16], SCHEME, meaning[:64])


# Standard concepts (pydicom.sr.codedict raises AttributeError for an unknown keyword).
REPORT_TITLE: Code = codes.DCM.ImagingMeasurementReport  # 126000, CID 7021
PROCEDURE: Code = codes.LN.MRIUnspecifiedBodyRegion  # 25056-3, CID 100
DEVICE: Code = codes.DCM.Device  # 121007, observer type (CID 270)
BRAIN: Code = codes.SCT.Brain  # 12738006, finding site
COMMENT: Code = codes.DCM.Comment  # 121106
# The decision sentence is a Comment too: a standard concept, and the one TID 1500 viewers
# (OHIF's dicom-sr extension) print with a measurement group; it comes before the statement.
DECISION: Code = COMMENT
FINDING: Code = codes.DCM.Finding  # 121071
VISUAL_EXPLANATION: Code = codes.DCM.VisualExplanation  # 130401
INDETERMINATE: Code = codes.SCT.Indeterminate  # 82334004
MEAN: Code = codes.SCT.Mean  # 373098007, derivation of the probabilities (CID 3488)
YES: Code = codes.SCT.Yes  # 373066001
NO: Code = codes.SCT.No  # 373067005
NO_UNITS: Code = codes.UCUM.NoUnits  # "1"

# Private concepts.
CLASS_CODES = {
    label: private(f"BXAI-{label.upper()}", CLASS_NAMES[label])
    for label in ("glioma", "meningioma", "notumor", "pituitary")
}
NOT_ANALYSED = private("BXAI-SKIPPED", "Series not analysed")
N_SLICES = private("BXAI-NSLICES", "Slices in the series")
N_ASSESSED = private("BXAI-NASSESSED", "Slices assessed (eligible for the vote)")
N_VOTES = private("BXAI-NVOTES", "Assessed slices voting for the finding")
OVERLAY = private("BXAI-OVERLAY", "Heatmap overlay image (Secondary Capture)")
OUTSIDE_BRAIN = private("BXAI-OUTSIDE", "Heatmap mass mostly outside the brain")
FAILS_CHECKS = private(
    "BXAI-FAILS", "Explanation fails its own quality checks (brain mass, deletion, insertion)"
)
METHOD_CODES = {
    "gradcam": private("BXAI-GRADCAM", "Grad-CAM"),
    "gradcampp": private("BXAI-GRADCAMPP", "Grad-CAM++"),
    "layercam": private("BXAI-LAYERCAM", "LayerCAM"),
    "gradcam-b3": private("BXAI-GRADCAM-B3", "Grad-CAM (dense block 3)"),
    "hirescam-b3": private("BXAI-HIRESCAM-B3", "HiResCAM (dense block 3)"),
    "layercam-b3": private("BXAI-LAYERCAM-B3", "LayerCAM (dense block 3)"),
    "smoothgrad-sq": private("BXAI-SMOOTHGRAD-SQ", "SmoothGrad-squared"),
    "gradinput": private("BXAI-GRADINPUT", "Gradient x input"),
    "gradcam-gxi": private("BXAI-GRADCAM-GXI", "Grad-CAM sharpened by gradient x input"),
    "saliency": codes.DCM.Saliency,  # 130404
    "smoothgrad": private("BXAI-SMOOTHGRAD", "SmoothGrad"),
    "occlusion": private("BXAI-OCCLUSION", "Occlusion sensitivity"),
}
METRIC_CODES = {
    "brain_mass": private("BXAI-BRAINMASS", "Heatmap mass inside the brain (share)"),
    "deletion_auc": private("BXAI-DELAUC", "Deletion curve area (lower is better)"),
    "insertion_auc": private("BXAI-INSAUC", "Insertion curve area (higher is better)"),
    "deletion_auc_random": private("BXAI-DELAUC-RND", "Deletion curve area of a random map"),
    "insertion_auc_random": private("BXAI-INSAUC-RND", "Insertion curve area of a random map"),
    "road_deletion_auc": private(
        "BXAI-ROADDEL", "ROAD deletion curve area, imputed pixels (lower is better)"
    ),
    "road_deletion_auc_random": private(
        "BXAI-ROADDEL-RND", "ROAD deletion curve area of a random map"
    ),
    "head_fraction": private("BXAI-HEADFRAC", "Head share of the image"),
    "n_slices": private("BXAI-QSLICES", "Slices used for the explanation quality"),
}
# Figures the report states otherwise (outside_brain is the qualitative evaluation).
DERIVED_METRICS = frozenset({"outside_brain"})


def readable(name: str) -> str:
    """A key such as ``deletion_auc`` as words: 'Deletion auc'."""
    words = name.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else "-"


def class_code(label: str) -> Code:
    """The coded concept of a class name or 'indeterminate'."""
    if label in CLASS_CODES:
        return CLASS_CODES[label]
    if label == "indeterminate":
        return INDETERMINATE
    return private(f"BXAI-C-{label.upper()}", readable(label))


def class_name(label: str) -> str:
    """The readable class name used in sentences ('Glioma', 'Indeterminate')."""
    return class_code(label).meaning


def probability_code(label: str, of_series: bool = False) -> Code:
    """'Mean slice (or series) probability of <class>', named as not the decision."""
    over = "series" if of_series else "slice"
    what = "no tumour" if label == "notumor" else class_name(label).lower()
    meaning = f"Mean {over} probability of {what} (not the decision)"
    prefix = "BXAI-SP-" if of_series else "BXAI-P-"
    return private(f"{prefix}{label.upper()}", meaning)


def method_code(method: str) -> Code:
    return METHOD_CODES.get(method) or private(f"BXAI-M-{method.upper()}", readable(method))


def metric_code(name: str) -> Code:
    return METRIC_CODES.get(name) or private(f"BXAI-Q-{name.upper()}", readable(name))


def scheme_identification() -> Dataset:
    """Coding Scheme Identification Sequence item for 99BRAINXAI (PS3.3 C.12.1.1.2)."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "brainxai private codes"
    item.CodingSchemeResponsibleOrganization = "brainxai project"
    return item
