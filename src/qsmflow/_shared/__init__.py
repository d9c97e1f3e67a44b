"""What every stage shares: argument checks, units (Hz, ppm, rad), constants, the method
registry, the conjugate-gradient solver, noise weights and element-wise work split over the cores.
Imports numpy and the standard library only; no stage, io, cli or workflow."""
