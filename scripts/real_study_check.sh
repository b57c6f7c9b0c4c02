#!/usr/bin/env bash
# The real-study development check: convert the shared volumes to DICOM series (one per
# plane and sequence, every third slice; 3D DICOM series also reformatted to other planes),
# link the shared DICOM studies beside them, write labels.csv (expected class, whether the
# case was used in training, and whose it is), then run `brainxai evaluate-studies`.
# Usage: bash scripts/real_study_check.sh [OUT] [--model REF]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-var/real-studies}; shift || true
DATA=${BRAINXAI_SHARED_DATA:-../shared/data}
V=$DATA/volumes
BX=.venv/bin/brainxai
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
labels=$OUT/labels.csv
echo "path,expected,split,patient" > "$labels"

patient_of() {  # whose a study is, from its source: a volume's patient folder, else its name
  case $1 in
    */volumes/*/*/*) basename "$(dirname "$1")" ;;  # volumes/<class>/<patient>/<sequence>
    *.nii.gz) basename "$1" .nii.gz ;;             # volumes/<class>/<patient>.nii.gz
    *) basename "$1" ;;                            # dicom/<study>
  esac
}

convert() {  # name nifti plane description expected split [brainmask] [contrast]
  local name=$1 nifti=$2 plane=$3 desc=$4 expected=$5 split=$6 mask=${7:-} contrast=${8:-}
  if [ ! -d "$OUT/$name" ]; then
    $BX volume-to-dicom "$nifti" --out "$OUT/$name" --plane "$plane" --stride 3 \
      --description "$desc" ${mask:+--brainmask "$mask"} ${contrast:+--contrast "$contrast"} >/dev/null
  fi
  echo "$name,$expected,$split,$(patient_of "$nifti")" >> "$labels"
}
study() {  # name expected split brainmask, then per series: nifti description contrast
  # Several sequences of one patient as one multi-series study (one StudyInstanceUID), the
  # way a clinical study arrives: every series is analysed and the study rule combines them.
  local name=$1 expected=$2 split=$3 mask=$4 uid n=0 patient
  shift 4
  patient=$(patient_of "$1")
  uid=2.25.$((16#$(printf %s "$name" | md5sum | cut -c1-15)))
  while [ $# -ge 3 ]; do
    n=$((n + 1))
    if [ ! -d "$OUT/$name/s$n" ]; then
      $BX volume-to-dicom "$1" --out "$OUT/$name/s$n" --plane axial --stride 3 \
        --description "$2" ${3:+--contrast "$3"} ${mask:+--brainmask "$mask"} \
        --study-uid "$uid" --series-number "$n" >/dev/null
    fi
    shift 3
  done
  echo "$name,$expected,$split,$patient" >> "$labels"
}
link() {  # name folder expected split
  [ -e "$OUT/$1" ] || ln -s "$(cd "$2" && pwd)" "$OUT/$1"
  echo "$1,$3,$4,$(patient_of "$2")" >> "$labels"
}

# Held out of training (the development check).
link pgbm-001-t1post "$DATA/dicom/pgbm-001-t1post" glioma dev
link tcga-fg-6692 "$DATA/dicom/tcga-fg-6692" glioma dev
link normal-t1w-axial "$DATA/dicom/normal-t1w-axial" notumor dev
link normal-t1-sagittal "$DATA/dicom/normal-t1-sagittal" notumor dev
P6=$V/glioma/brats-2013-pat0006
G1=$V/glioma/brats-gli-00001-000
for plane in axial sagittal coronal; do
  convert "brats-2013-pat0006-t1c-$plane" "$P6/t1c.nii.gz" $plane "T1 post-contrast" glioma dev "$P6/brainmask.nii.gz" GADOLINIUM
  convert "brats-gli-00001-000-t1c-$plane" "$G1/t1c.nii.gz" $plane "T1 post-contrast" glioma dev "" GADOLINIUM
done
convert brats-gli-00001-000-t1n-axial "$G1/t1n.nii.gz" axial "T1" glioma dev
# Multi-series studies (all of a patient's sequences, axial): T2 and FLAIR series beside the
# T1 ones must not turn the study into another class.
study brats-gli-00001-000-study glioma dev "" "$G1/t1n.nii.gz" "T1" "" \
  "$G1/t1c.nii.gz" "T1 post-contrast" GADOLINIUM "$G1/t2w.nii.gz" "T2" "" "$G1/t2f.nii.gz" "FLAIR" ""
study brats-2013-pat0006-study glioma dev "$P6/brainmask.nii.gz" "$P6/t1c.nii.gz" "T1 post-contrast" GADOLINIUM \
  "$P6/flair.nii.gz" "FLAIR" ""
convert flair-chronic-lesion-axial "$V/other/flair-chronic-lesion.nii.gz" axial "FLAIR" other dev
convert flair-chronic-lesion-as-t1-axial "$V/other/flair-chronic-lesion.nii.gz" axial "T1 (really FLAIR)" other dev
# Reformats of a 3D DICOM series (volume-to-dicom reads the folder): other planes than stored.
convert normal-t1w-sagittal-reformat "$DATA/dicom/normal-t1w-axial" sagittal "T1 3D sagittal reformat" notumor dev
convert normal-t1w-coronal-reformat "$DATA/dicom/normal-t1w-axial" coronal "T1 3D coronal reformat" notumor dev
# Used in training (a fit check, not a test).
link m025-meningioma "$V/meningioma/m025/t1-dicom" meningioma train
for plane in sagittal coronal; do
  convert "m025-meningioma-$plane-reformat" "$V/meningioma/m025/t1-dicom" $plane "T1 MPRAGE $plane reformat" meningioma train "" GADOLINIUM
done
convert chris-t1-axial "$V/normal/chris-t1.nii.gz" axial "T1 MPRAGE" notumor train
convert chris-t1-sagittal "$V/normal/chris-t1.nii.gz" sagittal "T1 MPRAGE" notumor train
P1=$V/glioma/brats-2013-pat0001
convert brats-2013-pat0001-t1c-axial "$P1/t1c.nii.gz" axial "T1 post-contrast" glioma train "$P1/brainmask.nii.gz" GADOLINIUM
convert tcga-du-7294-t1c-axial "$V/glioma/tcga-du-7294/t1c.nii.gz" axial "T1 post-contrast" glioma train "" GADOLINIUM
for n in 2 3 4 5; do
  P=$V/glioma/brats-2013-pat000$n
  convert "brats-2013-pat000$n-t1c-axial" "$P/t1c.nii.gz" axial "T1 post-contrast" glioma train "$P/brainmask.nii.gz" GADOLINIUM
done
convert brats2012-hg0015-t1c-axial "$V/glioma/brats2012-hg0015/t1c.nii.gz" axial "T1 post-contrast" glioma train "" GADOLINIUM
convert brats-case-x-t1c-axial "$V/glioma/brats-case-x/t1c.nii.gz" axial "T1 post-contrast" glioma train "" GADOLINIUM
link transfer-syntaxes "$DATA/dicom/transfer-syntaxes" notumor dev

$BX evaluate-studies --data "$OUT" --labels "$labels" --out "$OUT/report.json" "$@"
