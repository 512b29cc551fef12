"""
Exit codes of the C{ecs} command, the same in the SSH admin shell: scripts
test them (0 ok, 1 refused or failed, 2 usage, 3 authentication or role,
4 ECA unreachable, 5 timed out).
"""

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
