"""What every stage shares: argument checks, units (Hz, ppm, rad), constants, the method
registry, the conjugate-gradient solver and noise weights. Imports numpy only; no stage, io,
cli or workflow."""
