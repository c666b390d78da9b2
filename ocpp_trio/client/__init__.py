"""The station side: a charge point that connects to a CSMS, and the simulator built on it."""
