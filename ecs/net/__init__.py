"""
The message bus: the node interface (C{transport}), its ZeroMQ and memory
media, the sans-IO cores they share (C{dispatcher}, C{correlator}, C{pubsub},
C{heartbeat}), CURVE keys and the registry.
"""
