#!/usr/bin/env bash
# A plan against uniform generation on the bundled digits (examples/README.md says what it asks).
# Run from the repository root; everything lands in digits-plan/. About 4 minutes on 2 CPU cores.
# SYNTHWORTH may name another way to call the command (e.g. "python -m synthworth").
set -euo pipefail
sw() { ${SYNTHWORTH:-synthworth} "$@"; }
D=digits-plan

# 1. Real digits at 16x16 in three splits: train (the real pool), valid (the pilot study's test set:
#    the plan is made on it) and test (the 360 test digits, scored only by the check).
sw data prepare --source digits --size 16 --fit stretch --out $D/data/digits16 -q
sw data export $D/data/digits16 --split train --out $D/png/train-all -q
sw data prepare --path $D/png/train-all/train --size 16 --channels 1 --test-fraction 0.5 --out $D/data/train-valid -q
sw data export $D/data/train-valid --out $D/png/train-valid -q
sw data export $D/data/digits16 --split test --out $D/png/test -q
mkdir -p $D/png/three
mv $D/png/train-valid/train $D/png/three/train
mv $D/png/train-valid/test $D/png/three/valid
mv $D/png/test/test $D/png/three/test
sw data prepare --path $D/png/three --size 16 --channels 1 --out $D/data/digits16-3split -q

# 2. A generator uneven across classes: a class-conditional DCGAN trained on the real pool with
#    only 8 images of each of the digits 5-9 (all of 0-4), 60 epochs.
sw data export $D/data/digits16-3split --split train --out $D/png/gen -q
for c in 5 6 7 8 9; do
  find $D/png/gen/train/$c -name '*.png' | sort | tail -n +9 | xargs rm
done
rm -f $D/png/gen/train/metadata.*   # the export's index of the images; prepare reads the folders
sw data prepare --path $D/png/gen --size 16 --channels 1 --test-fraction 0 --out $D/data/gen-train -q
sw train dcgan --data $D/data/gen-train --out $D/runs/dcgan --preset digits train.epochs=60

# 3. The pilot: 100 images per class (seeds from 1,000,000: not the planned ones), and the study
#    that reads each class's curve and worth on the validation split.
sw generate --from $D/runs/dcgan --per-class 100 --seed 1000000 --name pilot --out $D/synthetic/pilot -q
sw study run examples/digits-plan-pilot.yaml -q

# 4. The plan: 150 images for a classifier with 40 real images (4 per class).
sw plan $D/pilot-results --generator pilot --images 150 --real-images 40 --out $D/plan.json

# 5. The same budget two ways, same generator, same seeds 0-149: as planned, and uniformly.
sw generate --from $D/runs/dcgan --plan $D/plan.json --name planned --out $D/synthetic/planned -q
sw generate --from $D/runs/dcgan --per-class 15 --name uniform --out $D/synthetic/uniform -q

# 6. The check on the test split, paired over seeds and test images.
sw study run examples/digits-plan-check.yaml -q
sw plan-check $D/check-results --planned planned --uniform uniform --plan $D/plan.json --out $D/check.json
