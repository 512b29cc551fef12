"""The message bus: the node interface (`transport`), its ZeroMQ and memory media, the sans-IO cores they share (`dispatcher`, `correlator`, `pubsub`, `heartbeat`), CURVE keys and the registry."""
