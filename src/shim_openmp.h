// The shims that loop with ATen's at::parallel_for include this. parallel_for is an inline
// template that hands its range to the intra-op threads only in code compiled with OpenMP
// and runs it on the calling thread otherwise, silently: build.rs passes -fopenmp, and
// this stops a build that lost it.
#pragma once

#ifndef _OPENMP
#error "flarecast's C++ shims must be compiled with OpenMP (-fopenmp, build.rs)"
#endif
