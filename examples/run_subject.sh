#!/usr/bin/env bash
# Process one BIDS subject with qsmflow from the shell.
# Usage: examples/run_subject.sh BIDS_DIR SUBJECT OUT_DIR
set -euo pipefail
bids=${1:?BIDS folder}; sub=${2:?subject label, e.g. 01}; out=${3:?output folder}
anat="$bids/sub-$sub/anat"
qsmflow run \
  --mag "$anat/sub-${sub}_echo-*_part-mag_MEGRE.nii.gz" \
  --phase "$anat/sub-${sub}_echo-*_part-phase_MEGRE.nii.gz" \
  -o "$out"
