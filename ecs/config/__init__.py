"""Configuration: agent settings and subsystem types (`settings`), where a PCA gets configurations (`sources`), log levels (`logs`)."""
