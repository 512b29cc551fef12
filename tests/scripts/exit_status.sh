#!/bin/sh
# Helper for tests.test_actions: exits with the status given as its first argument, or, given
# kill-SIGNAL (e.g. kill-USR1), kills itself with that signal.
case "$1" in
    kill-*) kill -s "${1#kill-}" $$ ;;
esac
exit "$1"
