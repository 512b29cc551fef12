#!/bin/sh
# Helper for tests.test_actions: reports its arguments, the ECS environment and its stdin.
config=$(cat)
printf 'args:%s\n' "$*"
printf 'env:%s|%s|%s|%s\n' "$ECS_SYSTEM" "$ECS_PARTITION" "$ECS_TRANSITION" "$ECS_STEP"
printf 'stdin:%s\n' "$config"
printf 'a warning\n' >&2
printf 'last line without newline'
