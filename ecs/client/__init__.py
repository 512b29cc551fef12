"""
The `ecs` command-line client and the command table it shares with the SSH shell.

`commands` (how a command is declared, its API protocol) and `table` (the
commands, with their bodies in `operate` and `manage`) are shared; the
command line adds `cli` (parsers, login), `api` (the API over HTTP),
`http`, `errors`, `credentials`, `context` and `watch` (the event stream);
`following` judges events for both front ends.
"""
