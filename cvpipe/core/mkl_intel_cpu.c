/* MKL, linked into libtorch_cpu, asks this function whether the processor is Intel's; when the answer is no it takes
 * other code paths for its BLAS (torch's matrix products) and its vector maths (torch's exp, log, sqrt, ...) than on
 * Intel, whatever MKL_CBWR asks for (its documentation: "on non-Intel CPUs ... the AUTO branch is used instead"), and
 * a model trained on an AMD processor gets other weights. Built by `make setup` into the venv and loaded into the
 * global symbol scope before torch (cvpipe/__init__.py), this definition answers for torch's own, so MKL runs the
 * pinned AVX2 branch of cvpipe/core/cpu.py on every x86-64 processor that has AVX2. */
int mkl_serv_intel_cpu_true(void) { return 1; }
