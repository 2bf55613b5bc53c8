"""The serving layer: the counselor endpoint and the live dashboard on Ray Serve."""
