"""
Configuration: agent settings and subsystem types (C{settings}), where a PCA
gets configurations (C{sources}), log levels (C{logs}).
"""
