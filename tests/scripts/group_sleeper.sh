#!/bin/sh
# Helper for tests.test_actions: starts a background child, writes "<own pid> <child pid>" to
# the file named by $1, prints "ready" and waits.  With $2 = ignore-term, it and its child
# ignore SIGTERM (so only SIGKILL stops them).  With $2 = exit, it exits 0 at once, leaving the
# child holding its stdout.
if [ "$2" = "ignore-term" ]; then
    trap '' TERM
fi
sleep 60 &
printf '%s %s\n' "$$" "$!" > "$1.tmp"
mv "$1.tmp" "$1"
printf 'ready\n'
if [ "$2" = "exit" ]; then
    exit 0
fi
wait
