"""FIS Calibrate's measurement of a model, and the profiles it writes for the FIS node to read."""
