"""Detector and global-system controllers, the sim host, and the subsystem actions they run."""
