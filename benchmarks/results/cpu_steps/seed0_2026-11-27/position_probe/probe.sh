cd /work/main
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench/code10/src
for m in h2aseg h2aseg_no_mcsa h2aseg_no_tamw dual_resunet3d; do
  nice -n 19 .venv/bin/python /work/bench/code10/benchmarks/small_lesions.py probe --cohort /work/bench/csprobe --name $m
done
