#!/bin/bash
# one-thread (and two-thread) training-step times of the cpu recipe's networks, side by side, quiet machine
cd /work/main
S="env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed.py --protocol cpu --patches 32,32,32 --channels-last --warmup 3 --repeats 12"
out=benchmarks/results/small_lesions_runs/steptimes_session7
mkdir -p $out
lscpu > $out/lscpu.txt
date -u > $out/when.txt
$S --model h2aseg > $out/h2aseg.json 2> $out/h2aseg_profile.txt --profile 12
$S --model h2aseg --model-options '{"mcsa_levels": [3, 4, 5]}' > $out/h2aseg_l345.json
$S --model h2aseg --model-options '{"window_size": [[8, 8, 4], [4, 4, 4], [8, 8, 4], [8, 8, 4], [8, 8, 4]]}' > $out/h2aseg_window444_l2.json
$S --model h2aseg_no_mcsa > $out/h2aseg_no_mcsa.json
$S --model basicunet > $out/basicunet.json
$S --model h2aseg > $out/h2aseg_again.json
S2="env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/speed.py --protocol cpu --patches 32,32,32 --channels-last --warmup 3 --repeats 12"
$S2 --model h2aseg > $out/h2aseg_2threads.json
$S2 --model basicunet > $out/basicunet_2threads.json
date -u >> $out/when.txt
