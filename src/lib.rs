//! tpu-run: BERT as XLA HLO, compiled and run through PJRT plugins.
