"""LeRobot checkpoints (SmolVLA, pi0, pi0.5, ACT, Diffusion Policy) behind our policy seam.

`layout` recognises a LeRobot directory without importing LeRobot; `adapter` loads and calls one
with LeRobot's own code, in the LeRobot environment (`make install-lerobot`, Python 3.12).
"""
