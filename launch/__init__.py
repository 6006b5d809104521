"""Sweeps of PaDIR experiments, run on this machine (`python -m launch.local`) or through
XManager (`python -m launch.xm_launch`). A sweep file defines `SWEEP = launch.sweeps.Sweep(...)`
(see `launch.sweeps`); gin/sweeps/ holds the paper's ablations."""
