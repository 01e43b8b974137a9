// Empty on purpose: this crate is a build-dependency of the agent only so
// cargo rebuilds the agent when the XDP program changes; the program itself
// is the `nta` binary, built for the bpf target by aya-build.
#![no_std]
