"""The `ecs` command-line client: HTTP calls to the ECA (`http`), the commands (`cli`), live views (`watch`)."""
