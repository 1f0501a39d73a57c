//! PJRT runtime: loads PJRT plugins with dlopen and compiles and runs HLO modules on them.
